import type { Command } from '../framework.ts';
import { dlqListCommand, dlqRedriveCommand } from './dlq.ts';
import { filesCommand } from './files.ts';
import { mappingsCommand } from './mappings.ts';
import { platformsListCommand, platformsValidateCommand } from './platforms.ts';
import { rejectedCommand, sendCommand, statsCommand, whyCommand } from './population.ts';
import { forgetAuditCommand, forgetCommand } from './privacy.ts';
import { segmentsCommand, segmentsEnsureCommand, segmentsResolveCommand } from './segments.ts';
import { platformsTestSyncCommand } from './test-sync.ts';

/**
 * Every `dmp` command. A new command is a module in this folder exporting a Command, added here
 * (names may have several words: `platforms validate`, `dlq redrive`).
 */
export const COMMANDS: readonly Command[] = [
  filesCommand,
  mappingsCommand,
  platformsListCommand,
  platformsValidateCommand,
  platformsTestSyncCommand,
  segmentsCommand,
  segmentsEnsureCommand,
  segmentsResolveCommand,
  sendCommand,
  whyCommand,
  statsCommand,
  rejectedCommand,
  forgetCommand,
  forgetAuditCommand,
  dlqListCommand,
  dlqRedriveCommand,
];
