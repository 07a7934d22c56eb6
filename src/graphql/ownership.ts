// Generations belong to the token that submitted them. A token without ADMIN finds only its own (the
// queries filter with auth/ownedBy), except in `queue`, which shows every owner's entries: there the
// fields that would tell another's prompts resolve to nothing (scope-auth's unauthorizedResolver).

export const HIDDEN = "Empty in another owner's generation (as `queue` shows them to a token without ADMIN).";

/** Field options: `hidden` instead of the value for a viewer who may not see the generation's owner's data. */
export const ownersOnly = <T>(hidden: T) => ({
  authScopes: (g: { owner: string }) => ({ owner: g.owner }),
  unauthorizedResolver: () => hidden,
});
