/** One validation problem as zod reports it (classic or mini schemas alike). */
export interface ValidationIssue {
  readonly path: readonly PropertyKey[];
  readonly message: string;
}

/**
 * `field.path: message` per problem. Apart from load.ts so that a reader of secrets does not load
 * the configuration schemas (and zod's full build) for it.
 */
export function formatIssues(error: { readonly issues: readonly ValidationIssue[] }): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.');
    return `${path}: ${issue.message}`;
  });
}
