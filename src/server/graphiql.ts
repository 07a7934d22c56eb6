// GraphiQL as sdql serves it: yoga's GraphiQL with every script, style and editor worker inlined in
// the page (@graphql-yoga/render-graphiql), so that it works without internet access (yoga's own page
// loads them from a CDN), opening on a welcome tab of sdql's own operations.
import { renderGraphiQL } from '@graphql-yoga/render-graphiql';
import type { GraphiQLOptions } from 'graphql-yoga';

/** The first tab of a new browser (GraphiQL keeps the user's tabs after that). */
export const WELCOME_QUERY = `# Welcome to sdql, a GraphQL API for Stable Diffusion.
#
# Run an operation of this tab with the ▶ button (it asks
# which one). The book icon on the left browses the schema,
# every field described; Ctrl-Space completes.
#
# No model yet? Write a tiny one (its images are noise):
#   node bin/sdql.js models create-demo models/demo
# then run RescanModels.

query Models {
  models { name supported error nativeWidth }
}

mutation RescanModels {
  rescanModels { models { name error } }
}

# Queues a generation and returns at once: put its id in
# the variables below, then run Progress.
mutation Txt2Img {
  generate(input: {
    modelId: "demo"
    prompt: "a lighthouse on a cliff at dusk"
    steps: 20
    seed: 1234
  }) { id status queuePosition seed width height }
}

# Its state now, one event per step with a small preview,
# then the final status (over WebSocket).
subscription Progress($id: ID!) {
  generationProgress(id: $id) {
    status step totalSteps etaMs preview { dataUrl } error
  }
}

query Result($id: ID!) {
  generation(id: $id) {
    status durationMs images { url seed infotext }
  }
}

# The newest generations first.
query History {
  generations(first: 10) {
    edges { node { id status prompt createdAt images { url } } }
    pageInfo { hasNextPage endCursor }
  }
}
`;

const WELCOME_VARIABLES = `${JSON.stringify({ id: 'the id Txt2Img returned' }, null, 2)}\n`;

// `variables` goes to GraphiQL as it is, though yoga's type does not list it.
export const GRAPHIQL_OPTIONS: GraphiQLOptions & { variables: string } = {
  title: 'sdql',
  // The Photoshop panel and the TypeScript client subscribe over graphql-ws too.
  subscriptionsProtocol: 'WS',
  defaultTabs: [{ query: WELCOME_QUERY, variables: WELCOME_VARIABLES }],
  // GraphiQL fills the first tab's variables from here, not from defaultTabs.
  variables: WELCOME_VARIABLES,
};

const pages = new Map<string, string>();

/** The page for `options`, built once: it inlines about 9 MB of scripts. */
export function graphiqlPage(options: GraphiQLOptions): string {
  const key = JSON.stringify(options);
  let page = pages.get(key);
  if (page === undefined) pages.set(key, (page = renderGraphiQL(options)));
  return page;
}
