import { CheckPhaseBatch } from './check-phase.js'
import type { Known } from './json-layout.js'

/**
 * The bases of a tied session's three-way merges (merge.ts `mergeChanged`): for each top-level key
 * changed since the last read or write, its stored value before the change, as text, as a
 * {@link StoredText} or as a {@link BaseCopy} (null: absent; undefined: not known, the key is then
 * this session's as a whole). Taken at a key's first change, so that an unchanged session keeps
 * no copy of its text.
 */
export type BaseText = string | StoredText | BaseCopy | null | undefined

/**
 * The whole session's text that every key a session has not changed since still holds (the text
 * it read, or the last one it wrote or sent): the base of a key changed for the first time, with
 * nothing copied or written out at the change. Parsed only when a merge needs it, once.
 */
export class StoredText {
  private parsed: Record<string, unknown> | undefined

  /** `known`: what this process knows of the text, when it wrote it itself (json-layout.ts). */
  constructor(
    readonly text: string,
    readonly known?: Known,
  ) {}

  /** `key`'s value in the text, parsed with `parse` (`absent` when the text has no such key). Never changed by a merge. */
  at<A>(key: string, parse: (text: string) => unknown, absent: A): unknown {
    const parsed = (this.parsed ??= parse(this.text) as Record<string, unknown>)
    return Object.hasOwn(parsed, key) ? parsed[key] : absent
  }
}

/** The value `base` (a known base of top-level `key`) stands for, texts parsed with `parse`; `absent` for a key that was not there. */
export function baseValue<A>(base: Exclude<BaseText, undefined>, key: string, parse: (text: string) => unknown, absent: A): unknown {
  if (base === null) return absent
  if (base instanceof StoredText) return base.at(key, parse, absent)
  if (base instanceof BaseCopy) return base.value
  return parse(base)
}

/** Bases whose source text is let go of at the next check phase. */
const holding = new CheckPhaseBatch<MergeBases>((held) => {
  for (const bases of held) bases.letGo()
})

/**
 * A base kept as a deep copy of plain JSON data rather than as its text, when a `json` session
 * has no source text any more: copying objects and arrays costs a fraction of writing their text
 * (numbers, doubles above all, are slow to write out).
 */
export class BaseCopy {
  constructor(readonly value: unknown) {}
}

/**
 * A deep copy of `value`, plain JSON data (objects with Object.prototype or none, arrays,
 * strings, finite numbers, booleans, null), as JSON.parse(JSON.stringify(value)) gives it.
 */
export function copyJson(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length)
    for (let i = 0; i < value.length; i++) out[i] = copyJson(value[i])
    return out
  }
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(value)) {
    const v = copyJson((value as Record<string, unknown>)[key])
    // a key named __proto__ is data, as JSON.parse makes it (an assignment would set the prototype)
    if (key === '__proto__') Object.defineProperty(out, key, { value: v, writable: true, enumerable: true, configurable: true })
    else out[key] = v
  }
  return out
}

export class MergeBases {
  private bases: Map<string, BaseText> | undefined
  /** The key of the last change: a loop of writes to one key costs one comparison. */
  private last: string | undefined
  private held: StoredText | undefined

  /**
   * `text` (the session data's whole text) is what every key now holds: the base of each key's
   * next first change, until the next check phase. Then it is let go of: a request that ties,
   * changes and unties in one go takes its bases from the text it read, and a session kept tied
   * longer holds no second copy of its data (its later first changes copy the key, see
   * {@link BaseCopy}). undefined: no such text (a session never stored, or not kept as JSON).
   */
  hold(text: string | undefined, known?: Known): void {
    const listed = this.held !== undefined
    this.held = text === undefined ? undefined : new StoredText(text, known)
    if (this.held !== undefined && !listed) holding.add(this)
  }

  /**
   * The text every key the session has not changed since holds (the text it read, or the last
   * one a write made or sent), until the next check phase: see {@link hold}.
   */
  get source(): StoredText | undefined {
    return this.held
  }

  /** The check phase after {@link hold}. */
  letGo(): void {
    this.held = undefined
  }

  /** True when top-level `top` has no base yet: its first change since the last read or write. */
  needs(top: string): boolean {
    if (top === this.last) return false
    if (this.bases?.has(top) !== true) return true
    this.last = top
    return false
  }

  /** Keeps `text`, the stored text of `top` before its first change. */
  keep(top: string, text: BaseText): void {
    ;(this.bases ??= new Map()).set(top, text)
    this.last = top
  }

  /** The base kept for `key`; `fallback` when none is. */
  get(key: string, fallback: () => BaseText): BaseText {
    return this.bases?.has(key) === true ? this.bases.get(key) : fallback()
  }

  /** Forgets every base (a reload; a new id). */
  clear(): void {
    this.set(undefined)
  }

  /** The bases of what a write replaces, taken when it is sent: changes made while it is in flight keep new ones. */
  take(): Map<string, BaseText> | undefined {
    const sent = this.bases
    this.set(undefined)
    return sent
  }

  /** Puts back the bases a write took that did not land, before those of changes made since. */
  restore(sent: Map<string, BaseText> | undefined): void {
    if (sent === undefined) return
    for (const [key, text] of this.bases ?? []) if (!sent.has(key)) sent.set(key, text)
    this.set(sent)
  }

  /** After a merge, theirs is the stored text: `next` holds the changed keys' texts in it. */
  replace(next: Map<string, BaseText>): void {
    this.set(next)
  }

  private set(bases: Map<string, BaseText> | undefined): void {
    this.bases = bases
    this.last = undefined
  }
}
