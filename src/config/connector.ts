import * as z from 'zod';

/**
 * A platform's connector: how we talk to its API. Onboarding a platform is writing one of these
 * (config/platforms/<environment>/<id>-<name>.json), not code. Every request is declarative: a
 * method, a path template, optional headers and a body template, with placeholders that are
 * escaped for the place they stand in (see src/connectors/templates.ts):
 *
 * - `{name}` the partner segment name (from `segments.nameTemplate`), `{audienceName}`,
 *   `{audienceId}`, `{kind}` (the partner's spelling, from `segments.kinds`), `{segmentId}`,
 *   `{environment}`, `{platformId}`, and `{var.<key>}` for the connector's `variables`;
 * - in a JSON body, a string that is exactly one placeholder takes the value's own JSON type
 *   (`"{segmentIdNumber}"` inserts a number); inside longer strings values are JSON-escaped.
 */

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/;

const headerName = z.string().regex(HEADER_NAME, 'must be an HTTP header name');
const headerValue = z
  .string()
  .max(1024)
  .refine((value) => !/[\r\n\0]/.test(value), { message: 'must not contain CR, LF or NUL' });

/** A JSONPath-like location in a partner's JSON answer: `segment_id`, `data.id`, `items[0].id`. */
export const JsonPathSchema = z
  .string()
  .regex(
    /^[A-Za-z_$][\w$-]*(\[\d+\])*(\.[A-Za-z_$][\w$-]*(\[\d+\])*)*$/,
    'must be a path like data.items[0].id',
  );

export const RequestTemplateSchema = z
  .object({
    method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']).default('POST'),
    /** Path and query, relative to `api.baseUrl`: `/v1/segment?title={name}`. */
    path: z
      .string()
      .min(1)
      .max(2048)
      .refine((value) => value.startsWith('/'), { message: 'must start with /' }),
    headers: z.record(headerName, headerValue).default({}),
    /** JSON body template (any JSON value), or form fields when `bodyFormat` is `form`. */
    body: z.unknown().optional(),
    bodyFormat: z.enum(['json', 'form']).default('json'),
  })
  .strict();

const secretsNote = 'credentials come from the platform secret, never from this file';

export const AuthSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('none') }).strict(),
  /** Secret fields (in the platform's `…/api` secret): `username`, `password`. */
  z
    .object({ type: z.literal('basic') })
    .strict()
    .describe(secretsNote),
  /** Secret field: `token`. */
  z.object({ type: z.literal('bearer') }).strict(),
  /** Secret field: `apiKey`. */
  z
    .object({
      type: z.literal('apiKey'),
      header: headerName.default('x-api-key'),
    })
    .strict(),
  /** Secret fields: `clientId`, `clientSecret`. */
  z
    .object({
      type: z.literal('oauth2ClientCredentials'),
      /** Absolute URL, or a path relative to `api.baseUrl`. */
      tokenUrl: z.string().min(1),
      scope: z.string().max(1024).optional(),
      audience: z.string().max(1024).optional(),
      /** How the client authenticates to the token endpoint (RFC 6749 2.3.1). */
      clientAuthentication: z.enum(['basic', 'body']).default('basic'),
      /** Fetch a new token this long before the cached one expires. */
      refreshBeforeExpirySeconds: z.number().int().min(0).max(3600).default(60),
    })
    .strict(),
  /**
   * HMAC request signing over method, path, timestamp and the exact body bytes (see
   * docs/connectors-auth.md). Secret fields: `keyId`, `key`.
   */
  z
    .object({
      type: z.literal('hmac'),
      algorithm: z.enum(['sha1', 'sha256']).default('sha256'),
    })
    .strict(),
]);

export const ApiSchema = z
  .object({
    /** Origin and optional path prefix of the partner's API: `https://api.third-party.com`. */
    baseUrl: z.string().refine(
      (value) => {
        try {
          const url = new URL(value);
          const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
          return (
            (url.protocol === 'https:' || (url.protocol === 'http:' && loopback)) && !url.search && !url.hash
          );
        } catch {
          return false;
        }
      },
      { message: 'must be an absolute https URL without query (http only for loopback)' },
    ),
    auth: AuthSchema,
    timeoutMs: z.number().int().min(100).max(60_000).default(5000),
    /** Non-secret values the templates can use as `{var.<key>}` (an ad account id, say). */
    variables: z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,63}$/), z.string().max(256)).default({}),
    /** Retries of 429, 5xx, timeouts and resets, with exponential backoff, full jitter and Retry-After. */
    retry: z
      .object({
        maxAttempts: z.number().int().min(1).max(10).default(4),
        baseDelayMs: z.number().int().min(10).max(60_000).default(200),
        maxDelayMs: z.number().int().min(10).max(300_000).default(10_000),
      })
      .strict()
      .default({ maxAttempts: 4, baseDelayMs: 200, maxDelayMs: 10_000 }),
  })
  .strict();

/** Which partner answers mean "that segment exists already". */
export const AlreadyExistsSchema = z
  .object({
    statuses: z.array(z.number().int().min(200).max(599)).default([409]),
    /** Substring of the body that must also be present, when the status alone is ambiguous. */
    bodyContains: z.string().min(1).max(256).optional(),
  })
  .strict();

export const SegmentsSchema = z
  .discriminatedUnion('creation', [
    z
      .object({
        /** The partner creates segments by an API call and answers with its id. */
        creation: z.literal('api'),
        nameTemplate: z.string().min(1).max(256).default('{audienceName}'),
        kinds: z
          .object({ custom: z.string().min(1).max(64), lookalike: z.string().min(1).max(64) })
          .strict()
          .default({ custom: 'custom', lookalike: 'lookalike' }),
        create: RequestTemplateSchema,
        /** Where the id is in the create answer (seed: `segment_id`). */
        idPath: JsonPathSchema,
        alreadyExists: AlreadyExistsSchema.optional(),
        /** Finds a segment by name: recovers from a crash after the partner's answer, and reads the id of an existing one. */
        lookupByName: RequestTemplateSchema.extend({ idPath: JsonPathSchema }).strict().optional(),
        /** Header carrying a stable idempotency key per (environment, platform, audience), where the partner honours one. */
        idempotencyKeyHeader: headerName.optional(),
        /**
         * The partner answers a repeated create (same name) with the segment it already made
         * (the seed's `"created": false`), so repeating a create whose outcome is unknown is safe.
         * Leave false unless the partner's documentation promises it: most platforms create twice.
         */
        createDeduplicates: z.boolean().default(false),
        /** Renames the partner segment when the DMP audience is renamed. */
        rename: RequestTemplateSchema.optional(),
      })
      .strict(),
    z
      .object({
        /** The partner creates a segment implicitly on first upload, keyed by its name (The Trade Desk's data groups): the rendered name is the segment id. */
        creation: z.literal('implicit'),
        nameTemplate: z.string().min(1).max(256).default('{audienceName}'),
        kinds: z
          .object({ custom: z.string().min(1).max(64), lookalike: z.string().min(1).max(64) })
          .strict()
          .default({ custom: 'custom', lookalike: 'lookalike' }),
      })
      .strict(),
  ])
  .superRefine((segments, ctx) => {
    if (segments.creation !== 'api') return;
    if (segments.alreadyExists && !segments.lookupByName) {
      // An "exists" answer without an id in it is only usable with a lookup.
      ctx.addIssue({
        code: 'custom',
        path: ['lookupByName'],
        message: 'is required with alreadyExists, to read the id of the existing segment',
      });
    }
  });

export const PopulationSchema = z
  .object({
    /** `batch` (micro-batches, the industry default), `single` (one call per user) or `file` (legacy, deprecated). */
    mode: z.enum(['batch', 'single', 'file']).default('batch'),
    /** Users per call in batch mode (seed: 10 to 1000). */
    batchSize: z.number().int().min(1).max(100_000).default(500),
    /** A batch is sent when it is this old, even if not full. */
    flushAfterMs: z.number().int().min(0).max(300_000).default(1000),
    /** Largest request body the partner accepts (The Trade Desk: ~2.5 MB). */
    maxRequestBytes: z
      .number()
      .int()
      .min(1024)
      .max(6 * 1024 * 1024)
      .default(1024 * 1024),
    /** Calls per second to the partner, across all our Lambdas. */
    rateLimitPerSecond: z.number().min(0.01).max(100_000).optional(),
    /** Concurrent delivery Lambdas for this platform (SQS maxConcurrency, 2-1000). */
    concurrency: z.number().int().min(2).max(1000).default(5),
    /** Adds: one user (`{userId}`) in single mode, the batch (`{items}`) in batch mode. */
    add: RequestTemplateSchema.optional(),
    /** JSON template of one item of `{items}`: `{"segment": "{segmentIdNumber}", "userid": "{userId}"}`. */
    item: z.unknown().optional(),
    /** How memberships end: a DELETE-style call, an op column in files, or expiry only. */
    removal: z
      .discriminatedUnion('via', [
        z.object({ via: z.literal('call'), request: RequestTemplateSchema }).strict(),
        z.object({ via: z.literal('opColumn') }).strict(),
        z.object({ via: z.literal('ttl') }).strict(),
      ])
      .default({ via: 'ttl' }),
    /** Membership lifetime sent to partners that take one, when an event has none. */
    defaultTtlSeconds: z
      .number()
      .int()
      .min(60)
      .max(540 * 86_400)
      .optional(),
  })
  .strict();

/** Placeholders of a file name template (see src/files/naming.ts). */
export const FILE_NAME_PLACEHOLDERS = [
  '{segmentId}',
  '{platformId}',
  '{yyyy}',
  '{MM}',
  '{dd}',
  '{HH}',
  '{mm}',
  '{part}',
] as const;

const fileNameTemplate = z
  .string()
  .min(1)
  .max(256)
  .superRefine((template, ctx) => {
    for (const placeholder of template.match(/\{[^}]*\}/g) ?? []) {
      if (!(FILE_NAME_PLACEHOLDERS as readonly string[]).includes(placeholder))
        ctx.addIssue({
          code: 'custom',
          message: `unknown placeholder ${placeholder} (known: ${FILE_NAME_PLACEHOLDERS.join(' ')})`,
        });
    }
    if (!template.includes('{segmentId}'))
      ctx.addIssue({ code: 'custom', message: 'must contain {segmentId}: one file per segment' });
    // Without the window start in the name, two windows would publish under one name.
    for (const field of ['{yyyy}', '{MM}', '{dd}', '{HH}', '{mm}'])
      if (!template.includes(field)) ctx.addIssue({ code: 'custom', message: `must contain ${field}` });
    if (/[/\\\0]/.test(template.replaceAll(/\{[^}]*\}/g, '')) || template.startsWith('.'))
      ctx.addIssue({ code: 'custom', message: 'must be a plain file name (no /, \\, NUL, no leading dot)' });
  });

/** OpenSSH's host key fingerprint format: `SHA256:` and 43 characters of unpadded base64. */
export const HOST_KEY_SHA256 = /^SHA256:[A-Za-z0-9+/]{43}$/;

export const FilesSchema = z
  .object({
    destination: z.discriminatedUnion('type', [
      z
        .object({
          type: z.literal('s3'),
          /**
           * The partner's bucket; absent: our own outbox bucket (the stack's FileOutboxBucket),
           * where the partner reads through a bucket policy or a role we grant it.
           */
          bucket: z
            .string()
            .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name')
            .optional(),
          /** Key prefix, `partner-x/incoming/` (a trailing slash is not added for you). */
          prefix: z
            .string()
            .max(512)
            .refine((value) => !value.startsWith('/'), { message: 'must not start with /' })
            .default(''),
          /**
           * A role in the partner's account that may write to its bucket, which our exporter assumes
           * (the partner's trust policy names our exporter role and this external id). Absent: the
           * partner's bucket policy grants our exporter role s3:PutObject directly.
           */
          roleArn: z
            .string()
            .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/, 'must be an IAM role ARN')
            .optional(),
          externalId: z.string().min(2).max(1224).optional(),
          /** The partner's bucket demands SSE-KMS with its key: objects are encrypted with it. */
          kmsKeyArn: z
            .string()
            .regex(/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]{1,128}$/, 'must be a KMS key ARN')
            .optional(),
          /**
           * Our outbox only: AWS principals of the partner (`arn:aws:iam::<account>:root` or a role)
           * that may list and read this platform's prefix, and nothing else of the bucket.
           */
          partnerReaders: z
            .array(
              z
                .string()
                .regex(
                  /^arn:aws[a-z-]*:iam::\d{12}:(root|role\/[\w+=,.@/-]{1,512})$/,
                  'must be an IAM account root or role ARN',
                ),
            )
            .max(10)
            .default([]),
        })
        .strict()
        .superRefine((destination, ctx) => {
          if (destination.partnerReaders.length === 0) return;
          if (destination.bucket)
            ctx.addIssue({
              code: 'custom',
              path: ['partnerReaders'],
              message: 'is for our outbox only (no bucket)',
            });
          if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\/$/.test(destination.prefix))
            ctx.addIssue({
              code: 'custom',
              path: ['prefix'],
              message: 'must be a folder of its own (like partner-x/) when partnerReaders may read it',
            });
        }),
      z
        .object({
          type: z.literal('sftp'),
          host: z.string().min(1).max(253),
          port: z.number().int().min(1).max(65_535).default(22),
          /** Remote directory the files go to. */
          directory: z.string().min(1).max(512).default('/'),
          /**
           * The partner's host key fingerprints (`ssh-keygen -lf <key>` prints them: `SHA256:...`);
           * a server presenting any other key is refused. Several during a key rotation.
           */
          hostKeySha256: z
            .array(z.string().regex(HOST_KEY_SHA256, 'must look like SHA256:<43 base64 chars>'))
            .min(1)
            .max(4),
          /** Credentials in the platform's `…/api` secret: `sftpUsername` and `sftpPrivateKey` (optionally `sftpPassphrase`) or `sftpPassword`. */
          auth: z.enum(['key', 'password']).default('key'),
          /** Connect and idle timeout. */
          timeoutMs: z.number().int().min(1000).max(120_000).default(20_000),
        })
        .strict(),
    ]),
    /** Length of a window: one file per segment with changes every this many minutes (UTC-aligned). */
    everyMinutes: z.number().int().min(1).max(1440).default(5),
    nameTemplate: fileNameTemplate.default('Mapp_dmp_{segmentId}_{yyyy}_{MM}_{dd}_{HH}_{mm}.tsv.gz'),
    /** Adds a second column `add`/`remove`; without it a file lists additions only. */
    opColumn: z.boolean().default(false),
    /** A window whose rows exceed this is split into parts (`_part2`, ... before `.tsv.gz`, or `{part}`). */
    maxRowsPerFile: z.number().int().min(1).max(100_000_000).default(10_000_000),
    /** A JSON manifest (rows, bytes, SHA-256 and names of the window's files), written after them. */
    manifest: z
      .object({
        nameTemplate: fileNameTemplate.default(
          'Mapp_dmp_{segmentId}_{yyyy}_{MM}_{dd}_{HH}_{mm}.manifest.json',
        ),
      })
      .strict()
      .optional(),
    /** Publish a header-less empty file for a window without changes (segments known to the platform). */
    emptyFiles: z.boolean().default(false),
    /** Staging partitions per window: each takes about 1000 stagings per second. */
    stagingShards: z.number().int().min(1).max(256).default(16),
    /** Publication attempts of one window that fail before the FilePublicationFailing alarm. */
    alarmAfterFailures: z.number().int().min(1).max(100).default(3),
  })
  .strict();

/** How to read the partner's answers to population calls. */
export const ResponsesSchema = z
  .object({
    /** Per-item results in a batch answer: where the array is, and which field says an item failed. */
    perItem: z
      .object({
        path: JsonPathSchema,
        errorField: z.string().min(1).max(64),
        /**
         * When set, the array lists only the failed items, each naming its position in the request
         * by this field (the seed partner: `errors: [{"index": 3, "error": "..."}]`); when absent,
         * the array has one result per item, in request order.
         */
        indexField: z.string().min(1).max(64).optional(),
      })
      .strict()
      .optional(),
    /**
     * Where a batch answer says how many items the partner applied (the seed: "sometimes the
     * amount of successful mutations is returned"), e.g. `processed`. A count short of the items
     * sent is a partial failure, resolved by bisection, never taken as a success.
     */
    countPath: JsonPathSchema.optional(),
    /** Statuses retried (besides 429 and 5xx, always retried). */
    retryableStatuses: z.array(z.number().int().min(400).max(499)).default([408, 425]),
  })
  .strict();

export const ConnectorSchema = z
  .object({
    api: ApiSchema,
    segments: SegmentsSchema,
    population: PopulationSchema.default({
      mode: 'batch',
      batchSize: 500,
      flushAfterMs: 1000,
      maxRequestBytes: 1024 * 1024,
      concurrency: 5,
      removal: { via: 'ttl' },
    }),
    files: FilesSchema.optional(),
    responses: ResponsesSchema.default({ retryableStatuses: [408, 425] }),
  })
  .strict()
  .superRefine((connector, ctx) => {
    if (connector.population.mode === 'file' && !connector.files) {
      ctx.addIssue({ code: 'custom', path: ['files'], message: 'is required when population.mode is file' });
    }
    if (connector.population.removal.via === 'opColumn' && connector.files && !connector.files.opColumn) {
      ctx.addIssue({
        code: 'custom',
        path: ['files', 'opColumn'],
        message: 'must be true when population.removal.via is opColumn',
      });
    }
    if (connector.population.mode !== 'file' && !connector.population.add) {
      ctx.addIssue({
        code: 'custom',
        path: ['population', 'add'],
        message: `is required when population.mode is ${connector.population.mode}`,
      });
    }
  });

export type Connector = z.output<typeof ConnectorSchema>;
export type ApiSettings = z.output<typeof ApiSchema>;
export type AuthSettings = z.output<typeof AuthSchema>;
export type RequestTemplate = z.output<typeof RequestTemplateSchema>;
export type SegmentsSettings = z.output<typeof SegmentsSchema>;
export type FilesSettings = z.output<typeof FilesSchema>;
export type FileDestination = FilesSettings['destination'];
