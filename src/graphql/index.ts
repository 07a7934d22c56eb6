// The GraphQL schema: one file per domain, each adding its types to the builder.
import { builder } from './builder.ts';
import './root.ts';
import './scalars.ts';
import './system.ts';
import './models.ts';
import './model-pulls.ts';
import './loras.ts';
import './scheduler.ts';
import './prompts.ts';
import './generations.ts';
import './images.ts';
import './upscalers.ts';
import './vaes.ts';
import './upscales.ts';
import './tokens.ts';

export const schema = builder.toSchema();
