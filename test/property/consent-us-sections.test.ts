import * as cmpapi from '@iabgpp/cmpapi';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { evaluateConsent } from '../../src/sync/consent.ts';
import { GPP_SECTION_USP_V1, US_CORE_LAYOUTS, US_SECTION_IDS } from '../../src/sync/consent-bits.ts';
import { BitWriter } from '../support/consent-strings.ts';

/**
 * GPP's US sections are read by our own reader (src/sync/consent-bits.ts, `readUsOptOut`) so that
 * the Lambda bundle does not carry the IAB's @iabgpp/cmpapi. The IAB library stays the reference
 * here: the layout table is checked against its segment definitions field by field, and on
 * generated sections (well-formed ones with every opt-out value, truncated ones, junk) both give
 * the same verdict. Seeded (FC_SEED / FC_NUM_RUNS override).
 */

const SEED = Number(process.env['FC_SEED'] ?? 20_261_130);
const NUM_RUNS = Number(process.env['FC_NUM_RUNS'] ?? 300);
const OPT_OUT_FIELDS = ['SaleOptOut', 'SharingOptOut', 'TargetedAdvertisingOptOut'] as const;

interface CmpField {
  readonly bitStringLength?: number;
  readonly elementBitStringLength?: number;
  readonly numElements?: number;
  readonly hardFailIfMissing?: boolean;
}
interface CmpSegment {
  getFieldNames(): string[];
  readonly fields: { get(name: string): CmpField };
}
const library = cmpapi as unknown as Record<string, unknown>;

/** The library's core segment of section `sid` (e.g. `UsCaCoreSegment` for 8). */
function librarySegment(sid: number): CmpSegment {
  const name = cmpapi.Sections.SECTION_ID_NAME_MAP.get(sid) as string;
  const className = `${Object.keys(library).find(
    (key) => (library[key] as { NAME?: unknown } | undefined)?.NAME === name,
  )}CoreSegment`;
  const Segment = library[className] as new () => CmpSegment;
  return new Segment();
}

/** The verdict of the IAB library for one section, as consent.ts decided before (the oracle). */
function libraryVerdict(sid: number, encoded: string): 'optout' | 'invalid' | 'ok' {
  const model = new cmpapi.GppModel();
  try {
    model.decodeSectionById(sid, encoded);
  } catch {
    return 'invalid';
  }
  const fields = sid === GPP_SECTION_USP_V1 ? (['OptOutSale'] as const) : OPT_OUT_FIELDS;
  const optedOut = sid === GPP_SECTION_USP_V1 ? 'Y' : 1;
  let readable = 0;
  for (const field of fields) {
    let value: unknown;
    try {
      value = model.getFieldValueBySectionId(sid, field);
    } catch {
      continue;
    }
    readable++;
    if (value === optedOut) return 'optout';
  }
  return readable === 0 ? 'invalid' : 'ok';
}

/** Ours, through the consent decision (the section alone, named by gpp_sid). */
function ourVerdict(sid: number, encoded: string): 'optout' | 'invalid' | 'ok' {
  const header = new BitWriter().int(3, 6).int(1, 6).int(1, 12).int(0, 1).fibonacci(sid).toBase64Url();
  const verdict = evaluateConsent(
    { gpp: `${header}~${encoded}`, gppSid: String(sid), globalPrivacyControl: false },
    { gdprAppliesWhenUnknown: false, honourGlobalPrivacyControl: false },
  );
  if (verdict.allowed) return 'ok';
  if (verdict.reason === 'consent_gpp_optout') return 'optout';
  if (verdict.reason === 'consent_gpp_invalid') return 'invalid';
  throw new Error(`unexpected verdict ${verdict.reason} for section ${sid} ${JSON.stringify(encoded)}`);
}

const SECTION_IDS = [GPP_SECTION_USP_V1, ...US_SECTION_IDS];

describe('GPP US sections: our layout table is the IAB library’s', () => {
  it('covers sections 7-23, as consent.ts accepts them', () => {
    expect(US_SECTION_IDS).toEqual(Array.from({ length: 17 }, (_, index) => index + 7));
  });

  it.each(US_SECTION_IDS)('section %i: core length and opt-out offsets', (sid) => {
    const segment = librarySegment(sid);
    let offset = 0;
    const optOuts: number[] = [];
    for (const name of segment.getFieldNames()) {
      const field = segment.fields.get(name);
      // Every field must be present: a short core segment does not decode at all.
      expect(field.hardFailIfMissing, `${sid} ${name}`).toBe(true);
      const width = field.bitStringLength ?? (field.elementBitStringLength ?? 0) * (field.numElements ?? 0);
      expect(width, `${sid} ${name}`).toBeGreaterThan(0);
      if ((OPT_OUT_FIELDS as readonly string[]).includes(name)) {
        expect(field.bitStringLength, `${sid} ${name}`).toBe(2);
        optOuts.push(offset);
      }
      offset += width;
    }
    expect(US_CORE_LAYOUTS[sid]).toEqual({ bits: offset, optOuts });
  });
});

describe('GPP US sections: the same verdicts as the IAB library', () => {
  const base64url = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const core = fc.string({ unit: fc.constantFrom(...base64url), maxLength: 16 });
  const junk = fc.string({ unit: fc.constantFrom(...base64url, '.', '~', '*', ' ', 'y'), maxLength: 16 });
  const usp = fc
    .tuple(
      fc.constantFrom('1', '2', 'x'),
      ...[0, 1, 2].map(() => fc.constantFrom('Y', 'N', '-', 'y', 'n', '?')),
      fc.constantFrom('', '', 'N', '.abc'),
    )
    .map((parts) => parts.join(''));

  it('random cores, junk and US Privacy strings', () => {
    fc.assert(
      fc.property(fc.constantFrom(...SECTION_IDS), fc.oneof(core, junk, usp), (sid, encoded) => {
        if (encoded.trim() === '' || encoded.includes('~')) return; // refused before the section is read
        expect(ourVerdict(sid, encoded)).toBe(libraryVerdict(sid, encoded));
      }),
      { seed: SEED, numRuns: NUM_RUNS * 4 },
    );
  });

  it('well-formed sections with every opt-out value, at every length the library reads', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...US_SECTION_IDS),
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 40, maxLength: 40 }),
        fc.integer({ min: -12, max: 12 }),
        fc.constantFrom('', '.', '.BA', '.garbage*'),
        (sid, values, extraBits, tail) => {
          // A core of 2-bit values (version first), then cut or padded around the layout's length.
          const bits = new BitWriter().int(1, 6);
          for (const value of values) bits.int(value, 2);
          const wanted = Math.max(6, (US_CORE_LAYOUTS[sid]?.bits ?? 0) + extraBits);
          const text = bits.toBase64Url().slice(0, Math.ceil(wanted / 6));
          const encoded = `${text}${tail}`;
          expect(ourVerdict(sid, encoded)).toBe(libraryVerdict(sid, encoded));
        },
      ),
      { seed: SEED, numRuns: NUM_RUNS * 4 },
    );
  });

  it('usnat cores of the legacy lengths (60 and 66 bits) decode', () => {
    for (const chars of [10, 11]) {
      for (const value of [0, 1, 2, 3]) {
        const bits = new BitWriter().int(1, 6);
        for (let field = 0; field < 30; field++) bits.int(value, 2);
        const encoded = bits.toBase64Url().slice(0, chars);
        expect(ourVerdict(7, encoded)).toBe(libraryVerdict(7, encoded));
        expect(ourVerdict(7, encoded)).toBe(value === 1 ? 'optout' : 'ok');
      }
    }
  });
});
