/**
 * Taking another writer's data into a tied session (after a compare-and-swap conflict, or on
 * `reload`) without breaking what the caller holds: objects are updated in place wherever the new
 * data still has the same kind of object at the same path, so views and the caller's own
 * references keep writing into the session there; what is replaced leaves the session (its views
 * go stale, see tracker.ts).
 */
import { baseValue, type BaseText } from './merge-bases.js'
import { isPlainObject, put, type Serializer } from './serializers.js'

type Data = Record<string, unknown>

/**
 * `next` made out of `old`: when both are plain objects, both arrays, both Maps, Sets or Dates,
 * `old` is changed in place to equal `next` (recursively) and returned; otherwise `next` is
 * returned and `detach` is told that `old` left the session.
 */
export function reconcile(old: unknown, next: unknown, detach: (gone: unknown) => void): unknown {
  if (typeof old !== 'object' || old === null || typeof next !== 'object' || next === null) {
    detach(old)
    return next
  }
  if (Array.isArray(old) && Array.isArray(next)) {
    for (let i = 0; i < next.length; i++) old[i] = i < old.length ? reconcile(old[i], next[i], detach) : next[i]
    if (old.length > next.length) detach(old.splice(next.length))
    return old
  }
  if (!Array.isArray(old) && !Array.isArray(next) && isPlainObject(old) && isPlainObject(next)) {
    const oldKeys = Object.keys(old)
    const nextKeys = Object.keys(next)
    for (const key of oldKeys) {
      if (!Object.hasOwn(next, key)) {
        detach(old[key])
        delete old[key]
      }
    }
    for (const key of nextKeys) put(old, key, Object.hasOwn(old, key) ? reconcile(old[key], next[key], detach) : next[key])
    // keys in the stored order, as a reload of a plain object would show them
    const order = Object.keys(old)
    if (order.some((key, i) => key !== nextKeys[i])) {
      const values = nextKeys.map((key) => old[key])
      for (const key of order) delete old[key]
      nextKeys.forEach((key, i) => put(old, key, values[i]))
    }
    return old
  }
  if (old instanceof Map && next instanceof Map) {
    old.clear()
    for (const [k, v] of next) old.set(k, v)
    return old
  }
  if (old instanceof Set && next instanceof Set) {
    old.clear()
    for (const v of next) old.add(v)
    return old
  }
  if (old instanceof Date && next instanceof Date) {
    old.setTime(next.getTime())
    return old
  }
  detach(old)
  return next
}

/**
 * Takes `theirs` (another writer's saved data) into `data` for every top-level key `ours` says
 * this session did not change; keys it did change keep this session's value (merged with theirs
 * by the caller, see {@link merge3}). `skip` is never touched (the id). Returns the keys whose
 * value was taken from theirs.
 */
export function takeTheirs(
  data: Data,
  theirs: Data,
  ours: (key: string) => boolean,
  same: (key: string) => boolean,
  detach: (gone: unknown) => void,
  skip: string,
): string[] {
  const taken: string[] = []
  for (const key of new Set([...Object.keys(data), ...Object.keys(theirs)])) {
    if (key === skip || ours(key)) continue
    if (!Object.hasOwn(theirs, key)) {
      detach(data[key])
      delete data[key]
    } else if (!Object.hasOwn(data, key)) {
      put(data, key, theirs[key])
    } else if (!same(key)) {
      put(data, key, reconcile(data[key], theirs[key], detach))
    } else continue
    taken.push(key)
  }
  return taken
}

/** The plain objects and arrays inside `value`, itself included: what a write that replaces `value` may move into its new value. */
export function containers(value: unknown, into = new Set<object>()): Set<object> {
  if (typeof value !== 'object' || value === null || into.has(value) || !(Array.isArray(value) || isPlainObject(value))) return into
  into.add(value)
  for (const child of Object.values(value)) containers(child, into)
  return into
}

/** A key or element that is not there, in {@link merge3}. */
export const ABSENT: unique symbol = Symbol('absent')

/**
 * The three-way merge of one value: `base` is what both writers started from (the last text this
 * session read or wrote), `ours` and `theirs` what each made of it (ABSENT: deleted, or not there).
 * A side that left the value as it was takes the other's; where both changed a plain object,
 * each key is merged; where both changed an array, elements present in `base` are merged by
 * position and what each side appended after them is kept, theirs first (20 requests each pushing
 * to one cart keep 20 items); a side that only appended to `base` keeps the other's removals.
 * Anything else both changed is ours (the last writer wins, as it always did for a top-level key).
 * A container both created is merged as if `base` had held an empty one. `same` compares two
 * stored values. Results share objects with `ours` and `theirs`: pass copies.
 */
export function merge3(base: unknown, ours: unknown, theirs: unknown, same: (a: unknown, b: unknown) => boolean): unknown {
  const equal = (a: unknown, b: unknown) => a === b || (a !== ABSENT && b !== ABSENT && same(a, b))
  const merge = (b: unknown, o: unknown, t: unknown): unknown => {
    if (equal(o, b)) return t
    if (equal(t, b) || equal(o, t)) return o
    if (Array.isArray(o) && Array.isArray(t)) {
      const from = Array.isArray(b) ? b : []
      const n = from.length
      if (o.length >= n && t.length >= n) {
        const out: unknown[] = []
        for (let i = 0; i < n; i++) out.push(merge(from[i], o[i], t[i]))
        return out.concat(t.slice(n), o.slice(n))
      }
      const startsWithBase = (a: unknown[]) => a.length >= n && from.every((x, i) => equal(x, a[i]))
      if (startsWithBase(t)) return o.concat(t.slice(n))
      if (startsWithBase(o)) return t.concat(o.slice(n))
      return o
    }
    if (isRecord(o) && isRecord(t)) {
      const from = isRecord(b) ? b : {}
      const out: Record<string, unknown> = {}
      const at = (r: Record<string, unknown>, key: string) => (Object.hasOwn(r, key) ? r[key] : ABSENT)
      for (const key of new Set([...Object.keys(t), ...Object.keys(o)])) {
        const value = merge(at(from, key), at(o, key), at(t, key))
        if (value !== ABSENT) put(out, key, value)
      }
      return out
    }
    return o
  }
  return merge(base, ours, theirs)
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && isPlainObject(value)
}

/**
 * Merges this session's changed keys (`ours`) of `data` with `theirs`, each from its base
 * (`baseOf`: its stored text before this session changed it; unknown: this session's value as a
 * whole), objects updated in place (`detach` hears of what leaves). Returns the next bases: the
 * changed keys' texts in theirs, now the stored text. `skip` is never touched (the id).
 */
export function mergeChanged(o: {
  data: Record<string, unknown>
  theirs: Record<string, unknown>
  ours: (key: string) => boolean
  baseOf: (key: string) => BaseText
  serializer: Serializer
  detach: (gone: unknown) => void
  skip: string
}): Map<string, BaseText> {
  const { data, theirs, serializer, detach } = o
  const at = (from: Record<string, unknown>, key: string) => (Object.hasOwn(from, key) ? from[key] : ABSENT)
  const equal = (a: unknown, b: unknown) => serializer.stringify(a) === serializer.stringify(b)
  const next = new Map<string, BaseText>()
  // copies: the merge shares objects with its inputs, and reconcile then fills the live ones
  let mine: Record<string, unknown> | undefined
  for (const key of new Set([...Object.keys(data), ...Object.keys(theirs)])) {
    if (key === o.skip || !o.ours(key)) continue
    next.set(key, Object.hasOwn(theirs, key) ? serializer.stringify(theirs[key]) : null)
    const baseText = o.baseOf(key)
    if (baseText === undefined) continue // no base known: this session's value, as a whole
    mine ??= serializer.parse(serializer.stringify(data)) as Record<string, unknown>
    const base = baseValue(baseText, key, (text) => serializer.parse(text), ABSENT)
    const merged = merge3(base, at(mine, key), at(theirs, key), equal)
    if (merged === ABSENT) {
      detach(data[key])
      delete data[key]
    } else put(data, key, Object.hasOwn(data, key) ? reconcile(data[key], merged, detach) : merged)
  }
  return next
}
