// The root operation types; domain files add their fields to them.
import { builder } from './builder.ts';

builder.queryType({ description: 'Reads: models, LoRAs, embeddings, prompts, the queue and the history. `node(id:)` refetches any object by its global id.' });
builder.mutationType({ description: 'Writes: queueing, canceling and deleting generations, deleting images, rescanning the model folders.' });
builder.subscriptionType({ description: 'Live streams over graphql-ws (or server-sent events): progress of a generation, the queue, rescans.' });
