/**
 * The one function that decides how invisible characters in free text are shown, by the CLI's tables,
 * the dashboard's pages, error messages and every JSON output. No database needed.
 */
import fc from 'fast-check';
import { printable, printableJson, printableParts } from '../src/printable';

/** Written from the specification, not from the code (see the module's comment). */
const MUST_ESCAPE: [string, string, string][] = [
  ['NUL', '\u0000', '\\x00'],
  ['ESC', '\u001b', '\\x1b'],
  ['tab', '\t', '\\x09'],
  ['line feed', '\n', '\\x0a'],
  ['DEL', '\u007f', '\\x7f'],
  ['C1 next line', '\u0085', '\\x85'],
  ['C1 CSI', '\u009b', '\\x9b'],
  ['no-break space', '\u00a0', '\\xa0'],
  ['soft hyphen', '\u00ad', '\\xad'],
  ['Arabic letter mark', '\u061c', '\\u061c'],
  ['Hangul filler', '\u3164', '\\u3164'],
  ['en quad', '\u2000', '\\u2000'],
  ['zero-width space', '\u200b', '\\u200b'],
  ['zero-width joiner', '\u200d', '\\u200d'],
  ['left-to-right mark', '\u200e', '\\u200e'],
  ['right-to-left mark', '\u200f', '\\u200f'],
  ['line separator', '\u2028', '\\u2028'],
  ['paragraph separator', '\u2029', '\\u2029'],
  ['left-to-right embedding', '\u202a', '\\u202a'],
  ['right-to-left override', '\u202e', '\\u202e'],
  ['narrow no-break space', '\u202f', '\\u202f'],
  ['word joiner', '\u2060', '\\u2060'],
  ['invisible separator', '\u2063', '\\u2063'],
  ['left-to-right isolate', '\u2066', '\\u2066'],
  ['right-to-left isolate', '\u2067', '\\u2067'],
  ['first strong isolate', '\u2068', '\\u2068'],
  ['pop directional isolate', '\u2069', '\\u2069'],
  ['ideographic space', '\u3000', '\\u3000'],
  ['variation selector 16', '\ufe0f', '\\ufe0f'],
  ['byte order mark', '\ufeff', '\\ufeff'],
  ['interlinear annotation anchor', '\ufff9', '\\ufff9'],
  ['tag letter A', '\u{e0041}', '\\u{e0041}'],
  ['cancel tag', '\u{e007f}', '\\u{e007f}'],
  ['lone surrogate', '\ud800', '\\ud800'],
];

const VISIBLE = ['plain ascii: a-z 0-9 !"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~', 'ünïcödé', 'λ 🔒', 'עברית', 'العربية', 'e\u0301', '日本語', 'a b'];

describe('printable', () => {
  it.each(MUST_ESCAPE)('shows %s as a visible escape', (_what, char, escape) => {
    expect(printable(`a${char}b`)).toBe(`a${escape}b`);
    expect(printableParts(`a${char}b`)).toEqual([
      { text: 'a', codePoint: null },
      { text: escape, codePoint: char.codePointAt(0) },
      { text: 'b', codePoint: null },
    ]);
  });

  it('leaves visible text of every script, emoji, combining marks and plain spaces as it is', () => {
    for (const text of VISIBLE) {
      expect(printable(text)).toBe(text);
      expect(printableParts(text)).toEqual([{ text, codePoint: null }]);
    }
    expect(printableParts('')).toEqual([]);
  });

  it('never leaves an invisible character behind, for any text', () => {
    const mustEscape = new Set(MUST_ESCAPE.map(([, char]) => char));
    const invisible = fc.constantFrom(...mustEscape);
    const text = fc.array(fc.oneof(fc.string({ unit: 'binary', maxLength: 5 }), invisible), { maxLength: 20 }).map((pieces) => pieces.join(''));
    fc.assert(
      fc.property(text, (t) => {
        const shown = printable(t);
        // By code point: a high surrogate that found its low half is one visible astral character.
        for (const char of shown) expect(mustEscape.has(char)).toBe(false);
        expect(printableParts(t).map((p) => (p.codePoint === null ? p.text : String.fromCodePoint(p.codePoint))).join('')).toBe(t);
      }),
    );
  });
});

describe('printableJson', () => {
  it('writes invisible characters as \\u escapes that parse back to the exact text', () => {
    const value = { id: 'invoice\u202efdp.exe', tag: 'x\u{e0041}', c1: '\u009b2J', nested: [{ reason: 'a\u2028b\nc' }] };
    const json = printableJson(value, 2);
    expect(json).toContain('"invoice\\u202efdp.exe"');
    expect(json).toContain('"x\\udb40\\udc41"');
    expect(json).toContain('"\\u009b2J"');
    expect(json).toContain('"a\\u2028b\\nc"');
    // Indentation newlines stay layout.
    expect(json.split('\n').length).toBeGreaterThan(5);
    expect(JSON.parse(json)).toEqual(value);
    expect(printableJson('a\u200bb')).toBe('"a\\u200bb"');
  });

  it('parses back to what plain JSON gives for any value, and prints only visible characters', () => {
    const escaped = MUST_ESCAPE.map(([, char]) => char).filter((char) => char !== '\t' && char !== '\n');
    fc.assert(
      fc.property(fc.jsonValue(), fc.string({ unit: 'binary' }), (value, text) => {
        for (const v of [{ value }, { text }]) {
          const json = printableJson(v, 2);
          // Exactly what plain JSON gives (which writes -0 as 0, for one).
          expect(JSON.parse(json)).toEqual(JSON.parse(JSON.stringify(v)));
          // By code point: a valid surrogate pair (say U+10000) holds a code unit that, alone, is a lone
          // surrogate, which must be escaped; the pair itself is a visible character.
          const codePoints = new Set(json);
          for (const char of escaped) expect(codePoints.has(char)).toBe(false);
        }
      }),
      { examples: [[{}, '\u{10000}']] },
    );
  });
});
