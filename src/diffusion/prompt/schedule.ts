// AUTOMATIC1111's prompt editing and alternation (modules/prompt_parser.py,
// `get_learned_conditioning_prompt_schedules`, current master):
//   [from:to:when]  `from` up to step `when`, then `to`      [to:when]  nothing, then `to`
//   [from::when]    `from`, then nothing                     [a|b|c]    one option per step, in turn
// `when` with a decimal point is a fraction of the steps (`0.25`, `1.0`), without one a step number.
// A1111 parses this with a Lark grammar in which stray `[ ] ( ) :` are text at the top level only:
// inside a construct everything must nest properly, and a `|` outside an alternation, or a
// backslash that escapes nothing, makes the whole prompt a single unscheduled text.

import { PY_WHITESPACE } from './parse.ts';

export interface PromptScheduleEntry {
  /** Last step (as A1111 counts, see {@link ConditioningPlan}) at which `text` applies. */
  endAtStep: number;
  text: string;
}

interface Scheduled {
  kind: 'scheduled';
  before: Item[] | null;
  after: Item[];
  when: string;
}
interface Alternate {
  kind: 'alternate';
  options: Item[][];
}
/** Verbatim output: plain text, stray characters, emphasis kept for the attention parser. */
type Item = string | Item[] | Scheduled | Alternate;

interface Frame {
  open: '[' | '(';
  /** Items between separators; `separators[i]` follows `parts[i]`. */
  parts: Item[][];
  separators: (':' | '|')[];
  /** A `|` not consumed by a valid alternation, which must not reach the top level. */
  loosePipe: boolean;
}

// Lark's common SIGNED_NUMBER, matched leftmost-first as Lark's dynamic lexer does, between
// optional whitespace, as the whole text between the last `:` and the closing `]`.
const whenPattern = new RegExp(
  `^${PY_WHITESPACE}*([+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\\.[0-9]*|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+))${PY_WHITESPACE}*$`,
);

interface ParsedPrompt {
  items: Item[];
  scheduled: Scheduled[];
  hasAlternate: boolean;
}

/**
 * Parses the editing syntax in one pass with an explicit stack (no recursion, linear time).
 * Returns null where A1111's grammar has no parse.
 *
 * Where the grammar is ambiguous, A1111's Earley parser picks by hash order, so the result
 * changes between Python processes (`[a:3]]` is scheduled in some runs and plain text in
 * others); here a well-formed construct always wins over reading its brackets as stray text.
 */
function parseScheduleSyntax(text: string): ParsedPrompt | null {
  const root: Item[] = [];
  const stack: Frame[] = [];
  const scheduled: Scheduled[] = [];
  let hasAlternate = false;
  let buffer = '';
  // Frames below this depth hold a stray character or an invalid construct: they can only be
  // stray text. A stray poisons every open frame, so the poisoned ones are always the bottom ones.
  let poisonedDepth = 0;

  const current = (): Item[] => {
    const top = stack[stack.length - 1];
    return top ? top.parts[top.parts.length - 1] : root;
  };
  const flush = () => {
    if (buffer) current().push(buffer);
    buffer = '';
  };
  const poisonAll = () => (poisonedDepth = stack.length);
  const pop = () => {
    const frame = stack.pop()!;
    const poisoned = poisonedDepth > stack.length;
    poisonedDepth = Math.min(poisonedDepth, stack.length);
    return { frame, poisoned };
  };
  // Places a closed (or never closed) frame into its parent; false when that puts a `|` at the top level.
  const place = ({ frame, poisoned }: { frame: Frame; poisoned: boolean }, close: string): boolean => {
    const construct = close && !poisoned ? toConstruct(frame, close) : null;
    if (construct) {
      if (!Array.isArray(construct)) {
        if (construct.kind === 'scheduled') scheduled.push(construct);
        else hasAlternate = true;
      }
      current().push(construct);
      return true;
    }
    poisonAll();
    const parent = stack[stack.length - 1];
    if (parent) parent.loosePipe ||= frame.loosePipe;
    else if (frame.loosePipe) return false;
    current().push(verbatim(frame, close));
    return true;
  };

  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\') {
      // Lark's plain text takes `\` plus any character but a newline; nothing else takes a backslash.
      const next = text[i + 1];
      if (next === undefined || next === '\n') return null;
      buffer += c + next;
      i++;
    } else if (c === '[' || c === '(') {
      flush();
      stack.push({ open: c, parts: [[]], separators: [], loosePipe: false });
    } else if (c === ']' || c === ')') {
      flush();
      const top = stack[stack.length - 1];
      if (top && top.open === (c === ']' ? '[' : '(')) {
        if (!place(pop(), c)) return null;
      } else {
        poisonAll();
        current().push(c);
      }
    } else if (c === ':' || c === '|') {
      flush();
      const top = stack[stack.length - 1];
      if (!top) {
        if (c === '|') return null;
        root.push(c);
      } else {
        top.separators.push(c);
        top.parts.push([]);
        if (c === '|') top.loosePipe = true;
      }
    } else {
      buffer += c;
    }
  }
  flush();
  while (stack.length > 0) {
    if (!place(pop(), '')) return null;
  }
  return { items: root, scheduled, hasAlternate };
}

/** The construct a properly closed frame with nothing stray inside forms, or null when its brackets are stray text. */
function toConstruct(frame: Frame, close: string): Item[] | Scheduled | Alternate | null {
  const colons = frame.separators.filter((s) => s === ':').length;
  const pipes = frame.separators.length - colons;
  if (frame.open === '(') return pipes === 0 && colons <= 1 ? verbatim(frame, close) : null;
  if (pipes > 0) return colons === 0 ? { kind: 'alternate', options: frame.parts } : null;
  if (colons === 0) return verbatim(frame, close);
  if (colons > 2) return null;
  const last = frame.parts[colons];
  const when = last.every((x) => typeof x === 'string') ? whenPattern.exec(last.join('')) : null;
  if (!when) return null;
  return colons === 2
    ? { kind: 'scheduled', before: frame.parts[0], after: frame.parts[1], when: when[1] }
    : { kind: 'scheduled', before: null, after: frame.parts[0], when: when[1] };
}

function verbatim(frame: Frame, close: string): Item[] {
  const items: Item[] = [frame.open];
  frame.parts.forEach((part, i) => {
    items.push(part);
    if (i < frame.separators.length) items.push(frame.separators[i]);
  });
  if (close) items.push(close);
  return items;
}

/** The last step at which the `from` side applies: A1111's truncation and clamping. */
function resolveWhen(when: string, steps: number): number {
  const value = Number(when);
  const step = Math.trunc(when.includes('.') ? value * steps : value);
  return Math.min(steps, step);
}

function render(items: Item[], step: number, whenOf: Map<Scheduled, number>): string {
  const out: string[] = [];
  const stack: { items: Item[]; i: number }[] = [{ items, i: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    if (top.i === top.items.length) {
      stack.pop();
      continue;
    }
    const item = top.items[top.i++];
    if (typeof item === 'string') out.push(item);
    else if (Array.isArray(item)) stack.push({ items: item, i: 0 });
    else if (item.kind === 'alternate') stack.push({ items: item.options[(step - 1) % item.options.length], i: 0 });
    else if (step <= whenOf.get(item)!) {
      if (item.before) stack.push({ items: item.before, i: 0 });
    } else stack.push({ items: item.after, i: 0 });
  }
  return out.join('');
}

function assertSteps(steps: number) {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be a positive integer, got ${steps}`);
}

/**
 * The texts a prompt takes during sampling, as A1111's `get_learned_conditioning_prompt_schedules`:
 * each entry applies up to and including `endAtStep`; the last one ends at `steps`.
 */
export function promptSchedule(text: string, steps: number): PromptScheduleEntry[] {
  assertSteps(steps);
  const parsed = parseScheduleSyntax(text);
  if (!parsed) return [{ endAtStep: steps, text }];

  const whenOf = new Map<Scheduled, number>();
  const boundaries = new Set<number>([steps]);
  for (const s of parsed.scheduled) {
    const when = resolveWhen(s.when, steps);
    whenOf.set(s, when);
    if (when >= 1) boundaries.add(when);
  }
  if (parsed.hasAlternate) for (let s = 1; s <= steps; s++) boundaries.add(s);

  return [...boundaries]
    .sort((a, b) => a - b)
    .map((endAtStep) => ({ endAtStep, text: render(parsed.items, endAtStep, whenOf) }));
}

export interface ConditioningPlan {
  /** The distinct texts to encode, in order of first use. */
  texts: string[];
  /** For each denoising step index (0-based), the index in `texts` of the text conditioning it. */
  textIndexAtStep: number[];
}

/**
 * What the denoising loop needs from a prompt's schedule. A1111's sampler counts its steps from 0
 * and, at step index s, takes the first entry with s ≤ endAtStep (`reconstruct_cond_batch`), so
 * `[a:b:3]` over 10 steps conditions steps 0–3 on `a`, and `[a|b]` runs a, a, b, a, b, …
 * This keeps that off-by-one so that images match A1111's.
 */
export function conditioningPlan(text: string, steps: number): ConditioningPlan {
  const schedule = promptSchedule(text, steps);
  const texts: string[] = [];
  const indexOfEntry = schedule.map((entry) => {
    const found = texts.indexOf(entry.text);
    return found >= 0 ? found : texts.push(entry.text) - 1;
  });
  const textIndexAtStep: number[] = [];
  let entry = 0;
  for (let s = 0; s < steps; s++) {
    while (s > schedule[entry].endAtStep) entry++;
    textIndexAtStep.push(indexOfEntry[entry]);
  }
  return { texts, textIndexAtStep };
}
