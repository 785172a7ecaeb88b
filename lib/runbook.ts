/**
 * Where an alarm's runbook entry is: docs/operations.md, heading `### <anchor>`. Every alarm's
 * description ends with its line, so the notification tells on-call where to look; a test checks
 * that every alarm of the synthesized stack has one and that the heading exists.
 */
export const RUNBOOK = 'docs/operations.md';

export function runbookLine(anchor: string): string {
  return `Runbook: ${RUNBOOK}#${anchor}`;
}
