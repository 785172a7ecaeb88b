import * as z from 'zod/mini';
import en from 'zod/v4/locales/en.js';

/**
 * zod's mini build (functional API, tree-shaken: a Lambda bundle carries only the schemas and
 * checks it uses) with zod's English messages. The mini build loads no locale of its own, so
 * without this every issue would read "Invalid input"; with it, issues read as the full build's
 * ("Too small: expected string to have >=16 characters"). Schemas that a Lambda bundle reaches
 * import zod from here (`import * as z from '.../config/zod-mini.ts'`); the configuration
 * schemas, which only synth and the CLI run, stay on the full build.
 */
z.config(en());

export * from 'zod/mini';
