/**
 * The "loose" keys of a tied session: top-level keys whose data can change without passing a
 * trap, because the caller holds one of its objects (an object it assigned stays live, see
 * Serializer.adopt) or because a Date, Map or Set under it was handed out as it is. Each is
 * compared, at every flush, with the text it had when last written: a difference is a change.
 */
import { checkDepth, put, type Serializer } from './serializers.js'

type Data = Record<string, unknown>
const ABSENT = '\u0000absent'

export class LooseKeys {
  /** key -> its text at the last write or read; undefined: changed since, not yet written */
  private readonly written = new Map<string, string | undefined>()

  constructor(
    private readonly data: Data,
    private readonly serializer: Serializer,
  ) {}

  /** The stored text of `key` now (a marker when absent). */
  textOf(key: string): string {
    return Object.hasOwn(this.data, key) ? this.serializer.stringify(this.data[key]) : ABSENT
  }

  /** `key` turns loose; `pending`: it holds a change not yet written, else its text now is what is stored. */
  add(key: string, pending: boolean): void {
    if (pending) this.written.set(key, undefined)
    else if (!this.written.has(key)) this.written.set(key, this.textOf(key))
  }

  has(key: string): boolean {
    return this.written.has(key)
  }

  /** The text `key` had at its last write or read (null: absent then); undefined when it is not loose or holds a change not yet written. */
  storedText(key: string): string | null | undefined {
    const text = this.written.get(key)
    return text === undefined ? undefined : text === ABSENT ? null : text
  }

  /** True when loose `key` differs from what was last written (this session's own change). */
  changed(key: string): boolean {
    if (!this.written.has(key)) return false
    const text = this.written.get(key)
    return text === undefined || text !== this.textOf(key)
  }

  /** Adds to `dirty` every loose key that changed since the last write. */
  collect(dirty: Set<string>): void {
    for (const key of this.written.keys()) if (this.changed(key)) dirty.add(key)
  }

  /**
   * Checks loose values now (a TypeError names the path of what cannot be stored) and normalizes
   * them in place as a reload would show them (Serializer.adopt).
   */
  adopt(): void {
    const { adopt } = this.serializer
    if (adopt === undefined) return
    for (const key of this.written.keys()) {
      if (!Object.hasOwn(this.data, key)) continue
      const value = this.data[key]
      checkDepth(value, key, 1)
      const placed = adopt(value, key)
      if (placed !== value) put(this.data, key, placed)
    }
  }

  /** The text of every loose key now: taken when a write is sent, given to {@link settle} when it succeeded. */
  snapshot(): Map<string, string> {
    const texts = new Map<string, string>()
    for (const key of this.written.keys()) texts.set(key, this.textOf(key))
    return texts
  }

  /** After a write: each key is compared with the text it had when the write was sent (a change made meanwhile stays). */
  settle(texts: Map<string, string>): void {
    for (const [key, text] of texts) this.written.set(key, text)
  }

  /** After a reload or merge took `keys` from the store: their text now is what is stored. */
  stored(keys: Iterable<string>): void {
    for (const key of keys) if (this.written.has(key)) this.written.set(key, this.textOf(key))
  }

  /** Every loose key. */
  keys(): IterableIterator<string> {
    return this.written.keys()
  }
}
