import type { Command } from '../framework.ts';
import { mappingsCommand } from './mappings.ts';
import { platformsListCommand, platformsValidateCommand } from './platforms.ts';
import { segmentsCommand, segmentsEnsureCommand, segmentsResolveCommand } from './segments.ts';

/**
 * Every `dmp` command. A new command is a module in this folder exporting a Command, added here
 * (names may have several words: `platforms validate`, `dlq redrive`).
 */
export const COMMANDS: readonly Command[] = [
  mappingsCommand,
  platformsListCommand,
  platformsValidateCommand,
  segmentsCommand,
  segmentsEnsureCommand,
  segmentsResolveCommand,
];
