/**
 * Bounded readers for the two consent encodings whose range sections can be made to expand
 * without limit: the TCF v2 core segment (`gdpr_consent`, and GPP's TCF EU v2 section) and the GPP
 * header. The IAB libraries expand every range entry into a list of ids (one 17-bit entry can stand
 * for 65,535 vendors, a 4 KB string for tens of millions); these readers never expand anything.
 * They check a section's bit budget before reading it, read only the fields the consent decision
 * needs (purpose 1, and whether given vendor ids are covered), and refuse what no real CMP
 * produces. Work is linear in the length of the string: at most one pass over its bits, plus one
 * comparison per range entry and vendor id asked for.
 */

export type BitsProblem =
  /** Not the encoding at all, a truncated string, or values outside what the format allows. */
  | 'invalid'
  /** A section that declares more than its bits can hold, or ranges covering more ids than exist. */
  | 'over_budget';

export class ConsentBitsError extends Error {
  override readonly name = 'ConsentBitsError';
  constructor(
    readonly problem: BitsProblem,
    message: string,
  ) {
    super(message);
  }
}

const invalid = (message: string) => new ConsentBitsError('invalid', message);
const overBudget = (message: string) => new ConsentBitsError('over_budget', message);

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const SEXTET = new Int8Array(128).fill(-1);
for (let index = 0; index < BASE64URL.length; index++) SEXTET[BASE64URL.charCodeAt(index)] = index;

/** The bits of a base64url text (6 per character), read front to back. */
export class BitReader {
  private readonly sextets: Uint8Array;
  readonly length: number;
  position = 0;

  constructor(text: string) {
    this.sextets = new Uint8Array(text.length);
    for (let index = 0; index < text.length; index++) {
      const code = text.charCodeAt(index);
      const value = code < 128 ? (SEXTET[code] as number) : -1;
      if (value < 0) throw invalid('not base64url');
      this.sextets[index] = value;
    }
    this.length = text.length * 6;
  }

  get remaining(): number {
    return this.length - this.position;
  }

  bitAt(index: number): number {
    return ((this.sextets[Math.floor(index / 6)] as number) >> (5 - (index % 6))) & 1;
  }

  /** An unsigned integer of `width` (at most 48) bits. */
  int(width: number): number {
    if (width > this.remaining) throw invalid('truncated');
    let value = 0;
    for (let bit = 0; bit < width; bit++) value = value * 2 + this.bitAt(this.position + bit);
    this.position += width;
    return value;
  }

  skip(width: number): void {
    if (width > this.remaining) throw invalid('truncated');
    this.position += width;
  }

  /**
   * A Fibonacci-coded integer (GPP): bits weighted 1, 2, 3, 5, 8, ... ended by two ones. Codes
   * longer than `maxBits` are refused before they are summed.
   */
  fibonacci(maxBits: number): number {
    let value = 0;
    let previous = 0;
    let weight = 1;
    let next = 2;
    for (let length = 0; length < maxBits; length++) {
      const bit = this.int(1);
      if (bit === 1 && previous === 1) return value;
      if (bit === 1) value += weight;
      previous = bit;
      [weight, next] = [next, weight + next];
    }
    throw overBudget('Fibonacci code too long');
  }
}

/** Bits of a single-id range entry: the smallest entry; a count needing more bits is impossible. */
const TCF_MIN_ENTRY_BITS = 17;
/** Field offsets of the TCF v2 core segment (TCF v2.2 "Core String"), in bits. */
const TCF_VERSION_BITS = 6;
const TCF_PURPOSE_CONSENTS_AT = 152;
const TCF_VENDOR_SECTION_AT = 213;

export interface TcfCore {
  /** Purpose ids (1-24) with consent. */
  readonly purposeConsents: ReadonlySet<number>;
  /** Of the vendor ids asked for, those with consent. */
  readonly vendorConsents: ReadonlySet<number>;
}

/**
 * Reads a TCF v2 string's core segment (everything before the first `.`): version, purpose
 * consents, and the vendor consent section, checked against its budget, for `vendorIds` only.
 * The legitimate-interest and publisher-restriction sections that follow are not read.
 */
export function readTcfCore(text: string, vendorIds: readonly number[]): TcfCore {
  const dot = text.indexOf('.');
  const bits = new BitReader(dot === -1 ? text : text.slice(0, dot));
  if (bits.int(TCF_VERSION_BITS) !== 2) throw invalid('not TCF v2');
  bits.position = TCF_PURPOSE_CONSENTS_AT;
  const purposeConsents = new Set<number>();
  for (let purpose = 1; purpose <= 24; purpose++) if (bits.int(1) === 1) purposeConsents.add(purpose);
  bits.position = TCF_VENDOR_SECTION_AT;
  return { purposeConsents, vendorConsents: readVendorSection(bits, vendorIds) };
}

function readVendorSection(bits: BitReader, vendorIds: readonly number[]): Set<number> {
  const maxVendorId = bits.int(16);
  const isRange = bits.int(1) === 1;
  const granted = new Set<number>();
  if (!isRange) {
    if (maxVendorId > bits.remaining) throw invalid('vendor bitfield shorter than its maximum id');
    for (const id of vendorIds) {
      if (id >= 1 && id <= maxVendorId && bits.bitAt(bits.position + id - 1) === 1) granted.add(id);
    }
    bits.skip(maxVendorId);
    return granted;
  }
  const entries = bits.int(12);
  // The budget first: a count the remaining bits cannot hold is refused before any entry is read.
  if (entries * TCF_MIN_ENTRY_BITS > bits.remaining) throw overBudget('more range entries than bits');
  let covered = 0;
  for (let entry = 0; entry < entries; entry++) {
    const range = bits.int(1) === 1;
    const start = bits.int(16);
    const end = range ? bits.int(16) : start;
    if (start < 1 || end < start || end > maxVendorId) throw invalid('range outside 1..maxVendorId');
    covered += end - start + 1;
    // Disjoint ranges (what encoders write) cover at most maxVendorId ids; more means overlaps.
    if (covered > maxVendorId) throw overBudget('ranges cover more ids than the maximum vendor id');
    for (const id of vendorIds) if (id >= start && id <= end) granted.add(id);
  }
  return granted;
}

/** GPP header (section 3 "Header" of the GPP spec): type 3, version 1, section ids. */
const GPP_HEADER_TYPE = 3;
const GPP_HEADER_VERSION = 1;
/** The GPP spec defines section ids well below this; a header asking for more is refused. */
export const MAX_GPP_SECTIONS = 32;
const MAX_GPP_SECTION_ID = 64;
/** F(12) = 233 > MAX_GPP_SECTION_ID: a longer Fibonacci code cannot name a section. */
const MAX_FIBONACCI_BITS = 12;

/** The section ids a GPP header lists, in order; ranges are checked against the budget first. */
export function readGppHeader(text: string): number[] {
  const bits = new BitReader(text);
  if (bits.int(6) !== GPP_HEADER_TYPE || bits.int(6) !== GPP_HEADER_VERSION)
    throw invalid('not a GPP v1 header');
  const entries = bits.int(12);
  if (entries > MAX_GPP_SECTIONS) throw overBudget('too many section entries');
  // The smallest entry is 3 bits (a single id coded as `11`).
  if (entries * 3 > bits.remaining) throw overBudget('more section entries than bits');
  const ids: number[] = [];
  let offset = 0;
  for (let entry = 0; entry < entries; entry++) {
    const isRange = bits.int(1) === 1;
    const start = offset + bits.fibonacci(MAX_FIBONACCI_BITS);
    const end = isRange ? start + bits.fibonacci(MAX_FIBONACCI_BITS) : start;
    if (end > MAX_GPP_SECTION_ID) throw invalid('section id out of range');
    if (ids.length + (end - start + 1) > MAX_GPP_SECTIONS) throw overBudget('too many sections');
    for (let id = start; id <= end; id++) ids.push(id);
    offset = end;
  }
  return ids;
}

/**
 * GPP's US sections (7 US national, 8-23 the states) and its US Privacy section (6): fixed-size
 * fields, nothing to expand. Only their opt-outs matter to us, so only those are read: the bit
 * offsets of `SaleOptOut`, `SharingOptOut` and `TargetedAdvertisingOptOut` in each section's core
 * segment (the text before its first `.`), and the core segment's length. The layouts are those
 * of the IAB's @iabgpp/cmpapi 3.2.0, which the tests check this table against field by field
 * (test/unit/consent-us-sections.test.ts), and whose decoding these readers match verdict for
 * verdict on generated strings (test/property/consent-us-sections.test.ts).
 */
export interface UsCoreLayout {
  /** Bits of the core segment: a shorter one does not decode. */
  readonly bits: number;
  /** Bit offsets of the opt-out fields the section has (2-bit values, 1 = opted out). */
  readonly optOuts: readonly number[];
}

export const US_CORE_LAYOUTS: Readonly<Record<number, UsCoreLayout>> = {
  7: { bits: 70, optOuts: [18, 20, 22] }, // usnat: sale, sharing, targeted advertising
  8: { bits: 46, optOuts: [12, 14] }, // usca: sale, sharing
  9: { bits: 40, optOuts: [12, 14] }, // usva: sale, targeted advertising (and below)
  10: { bits: 38, optOuts: [12, 14] }, // usco
  11: { bits: 42, optOuts: [14, 16] }, // usut
  12: { bits: 44, optOuts: [12, 14] }, // usct
  13: { bits: 46, optOuts: [12, 14] }, // usfl
  14: { bits: 46, optOuts: [12, 14] }, // usmt
  15: { bits: 52, optOuts: [12, 14] }, // usor
  16: { bits: 42, optOuts: [12, 14] }, // ustx
  17: { bits: 52, optOuts: [12, 14] }, // usde
  18: { bits: 42, optOuts: [14, 16] }, // usia
  19: { bits: 42, optOuts: [12, 14] }, // usne
  20: { bits: 46, optOuts: [12, 14] }, // usnh
  21: { bits: 54, optOuts: [12, 14] }, // usnj
  22: { bits: 42, optOuts: [12, 14] }, // ustn
  23: { bits: 42, optOuts: [12, 14] }, // usmn
};

/** The US section ids (besides US Privacy, 6) read by readUsOptOut. */
export const US_SECTION_IDS = Object.keys(US_CORE_LAYOUTS).map(Number);
export const GPP_SECTION_USP_V1 = 6;

/**
 * Lengths of a usnat core segment written before it grew (12 to 16 sensitive-data categories, 2 to
 * 3 child consents): the IAB library pads them to the current layout, so they decode.
 */
const USNAT_LEGACY_BITS = new Set([60, 66]);
/** 2-bit US opt-out fields: 1 = opted out (0 = not applicable, 2 = did not opt out). */
const US_OPTED_OUT = 1;

/**
 * Whether a GPP US section (6-23) records an opt-out of sale, sharing or targeted advertising.
 * Throws `invalid` when the section does not decode (or is not one of those sections).
 */
export function readUsOptOut(sectionId: number, encoded: string): boolean {
  const dot = encoded.indexOf('.');
  const core = dot === -1 ? encoded : encoded.slice(0, dot);
  if (sectionId === GPP_SECTION_USP_V1) {
    // `1YNN`: version, notice, opt-out of sale, LSPA covered. As in the IAB library, four characters
    // decode whatever they are; only a `Y` in the third says "opted out".
    if (core.length !== 4) throw invalid('not a US Privacy string');
    return core.charAt(2) === 'Y';
  }
  const layout = US_CORE_LAYOUTS[sectionId];
  if (!layout) throw invalid('not a US section');
  const bits = new BitReader(core);
  if (bits.length < layout.bits && !(sectionId === 7 && USNAT_LEGACY_BITS.has(bits.length)))
    throw invalid('US section shorter than its fields');
  return layout.optOuts.some((offset) => {
    bits.position = offset;
    return bits.int(2) === US_OPTED_OUT;
  });
}
