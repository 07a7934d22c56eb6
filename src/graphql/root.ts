// The root operation types; domain files add their fields to them.
import { builder } from './builder.ts';

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
