/**
 * Lock ids, holder labels, host names, operators and reasons are free text written by other programs.
 * Characters in them that draw nothing, look like a plain space, or reorder the text around them could
 * rewrite an operator's terminal or make one lock id pass for another ("invoice\u202Efdp.exe" reads
 * as "invoiceexe.pdf"). Everything that shows such text to a person (the CLI's tables, the dashboard's
 * pages, error messages, JSON output) goes through this one module, so they all agree on what is shown
 * escaped and how.
 */

/**
 * Controls (C0, DEL, C1), format characters (bidirectional marks, embeddings, overrides and isolates,
 * zero-width characters, soft hyphen, BOM, tags), line and paragraph separators, every space but
 * U+0020, the remaining default-ignorable code points (which fonts draw as nothing), and lone
 * surrogates. Lookalike letters (Cyrillic "а" for Latin "a") are visible ink and are not covered.
 */
const INVISIBLE = /(?! )[\p{Cc}\p{Cf}\p{Z}\p{Default_Ignorable_Code_Point}\p{Cs}]/gu;

/** `\x1b` up to U+00FF, `\u202e` in the rest of the BMP, `\u{e0041}` beyond it: unambiguous to read back. */
function escapeOf(char: string): string {
  const code = char.codePointAt(0)!;
  const hex = code.toString(16);
  if (code <= 0xff) return `\\x${hex.padStart(2, '0')}`;
  return code <= 0xffff ? `\\u${hex.padStart(4, '0')}` : `\\u{${hex}}`;
}

/** A piece of text to show: a plain run, or the visible escape of one invisible character. */
export interface PrintablePart {
  text: string;
  /** The invisible character's code point when `text` is its escape (the dashboard marks these), else null. */
  codePoint: number | null;
}

/** `text` cut into plain runs and escapes, for output that marks the escapes (the dashboard's HTML). */
export function printableParts(text: string): PrintablePart[] {
  const parts: PrintablePart[] = [];
  let last = 0;
  for (const match of text.matchAll(INVISIBLE)) {
    const at = match.index ?? 0;
    if (at > last) parts.push({ text: text.slice(last, at), codePoint: null });
    parts.push({ text: escapeOf(match[0]), codePoint: match[0].codePointAt(0)! });
    last = at + match[0].length;
  }
  if (last < text.length) parts.push({ text: text.slice(last), codePoint: null });
  return parts;
}

/** `text` with every invisible character replaced by its visible escape (terminals, tooltips, titles). */
export function printable(text: string): string {
  return printableParts(text)
    .map((part) => part.text)
    .join('');
}

/**
 * JSON text whose strings carry every invisible character as a `\uXXXX` escape (astral ones as a
 * surrogate pair), so the output shows them visibly and still parses to exactly the same values.
 * JSON.stringify itself escapes only C0 controls and lone surrogates.
 */
export function printableJson(value: object | string, space?: number): string {
  // Outside strings JSON.stringify writes ASCII only, and inside them it has escaped every C0 control
  // already: a raw C0 character (a newline of `space`) is layout, the rest are inside strings.
  return JSON.stringify(value, null, space).replace(INVISIBLE, (char) => {
    if (char.charCodeAt(0) < 0x20) return char;
    let out = '';
    for (let i = 0; i < char.length; i++) out += `\\u${char.charCodeAt(i).toString(16).padStart(4, '0')}`;
    return out;
  });
}
