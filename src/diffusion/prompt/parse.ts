// AUTOMATIC1111's attention syntax (modules/prompt_parser.py, `parse_prompt_attention`):
// `(x)` ×1.1, `[x]` ÷1.1, `(x:w)` ×w, nesting multiplies, `\(` `\)` `\[` `\]` `\\` are literal,
// brackets left open multiply to the end of the prompt, unmatched closers are text.

export interface WeightedSegment {
  text: string;
  weight: number;
}

/** The segment that stands for the `BREAK` keyword: the chunker starts a new chunk there. */
export const BREAK_SEGMENT: Readonly<WeightedSegment> = Object.freeze({ text: 'BREAK', weight: -1 });

export const isBreak = (segment: WeightedSegment) => segment.text === 'BREAK' && segment.weight === -1;

/** Python's `\s` in `re` and Lark (Unicode whitespace per `str.isspace`); JavaScript's `\s` differs slightly. */
export const PY_WHITESPACE = '[\\t\\n\\v\\f\\r \\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';

/**
 * Weights are kept within ±WEIGHT_LIMIT after every multiplication. A1111 lets them grow without
 * bound (deep nesting or a long digit string reach Infinity, then NaN), which only yields a broken
 * image; ±1000 is far beyond any useful emphasis and keeps the emphasis arithmetic finite.
 */
export const WEIGHT_LIMIT = 1000;

const ROUND_MULTIPLIER = 1.1;
const SQUARE_MULTIPLIER = 1 / 1.1;

// `:` then an explicit weight then `)`, as in A1111's re_attention (ASCII digits only).
const explicitWeight = new RegExp(`:${PY_WHITESPACE}*([+-]?[.0-9]+)${PY_WHITESPACE}*\\)`, 'y');
// `\b` must follow Python's Unicode notion of word characters.
const breakKeyword = new RegExp(`${PY_WHITESPACE}*(?<![\\p{L}\\p{N}_])BREAK(?![\\p{L}\\p{N}_])${PY_WHITESPACE}*`, 'u');
const plainRun = /[^\\()[\]:]+/y;

/**
 * Splits a prompt into runs of text with their attention weight, merging neighbours of equal
 * weight. `BREAK` (a whole word) becomes {@link BREAK_SEGMENT}.
 *
 * Differences from A1111, on inputs where A1111 misbehaves: a `BREAK` inside brackets still
 * breaks the chunk (A1111 multiplies its marker, turning it into the word "break" with a negative
 * weight); an explicit weight that is not a number (`(x:1.2.3)`, `(x:.)`) is read as text where
 * A1111 raises; weights are clamped to ±{@link WEIGHT_LIMIT}; only ASCII digits form a weight.
 */
export function parsePromptAttention(text: string): WeightedSegment[] {
  // Parallel arrays keep the multiplication loop, quadratic in the worst case as in A1111, tight.
  const texts: string[] = [];
  const weights: number[] = [];
  const breaks: boolean[] = [];
  const roundBrackets: number[] = [];
  const squareBrackets: number[] = [];

  // Products are taken in A1111's order so that equal weights compare equal when merging.
  const multiplyRange = (start: number, multiplier: number) => {
    for (let p = start; p < weights.length; p++) {
      if (breaks[p]) continue;
      const w = weights[p] * multiplier;
      weights[p] = w > WEIGHT_LIMIT ? WEIGHT_LIMIT : w < -WEIGHT_LIMIT ? -WEIGHT_LIMIT : w;
    }
  };
  const push = (segment: string, isBreak = false) => {
    texts.push(segment);
    weights.push(isBreak ? BREAK_SEGMENT.weight : 1);
    breaks.push(isBreak);
  };
  const pushText = (run: string) => {
    run.split(breakKeyword).forEach((part, i) => {
      if (i > 0) push(BREAK_SEGMENT.text, true);
      push(part);
    });
  };

  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\\') {
      const next = text[i + 1];
      if (next !== undefined && '()[]\\'.includes(next)) {
        push(next);
        i += 2;
      } else {
        // A lone backslash is dropped: A1111 appends an empty segment for it.
        push('');
        i += 1;
      }
    } else if (c === '(') {
      roundBrackets.push(texts.length);
      i++;
    } else if (c === '[') {
      squareBrackets.push(texts.length);
      i++;
    } else if (c === ')' || c === ']') {
      const stack = c === ')' ? roundBrackets : squareBrackets;
      if (stack.length > 0) multiplyRange(stack.pop()!, c === ')' ? ROUND_MULTIPLIER : SQUARE_MULTIPLIER);
      else pushText(c);
      i++;
    } else if (c === ':') {
      explicitWeight.lastIndex = i;
      const m = explicitWeight.exec(text);
      const weight = m ? Number(m[1]) : NaN;
      if (m && roundBrackets.length === 0) {
        pushText(m[0]);
        i += m[0].length;
      } else if (m && !Number.isNaN(weight)) {
        multiplyRange(roundBrackets.pop()!, Math.min(WEIGHT_LIMIT, Math.max(-WEIGHT_LIMIT, weight)));
        i += m[0].length;
      } else {
        pushText(':');
        i++;
      }
    } else {
      plainRun.lastIndex = i;
      const run = plainRun.exec(text)![0];
      pushText(run);
      i += run.length;
    }
  }

  for (const pos of roundBrackets) multiplyRange(pos, ROUND_MULTIPLIER);
  for (const pos of squareBrackets) multiplyRange(pos, SQUARE_MULTIPLIER);

  if (texts.length === 0) return [{ text: '', weight: 1 }];

  const merged: WeightedSegment[] = [{ text: texts[0], weight: weights[0] }];
  for (let p = 1; p < texts.length; p++) {
    const last = merged[merged.length - 1];
    if (weights[p] === last.weight && !breaks[p] && !breaks[p - 1]) last.text += texts[p];
    else merged.push({ text: texts[p], weight: weights[p] });
  }
  return merged;
}
