/**
 * Taking another writer's data into a tied session (after a compare-and-swap conflict, or on
 * `reload`) without breaking what the caller holds: objects are updated in place wherever the new
 * data still has the same kind of object at the same path, so views and the caller's own
 * references keep writing into the session there; what is replaced leaves the session (its views
 * go stale, see tracker.ts).
 */
import { isPlainObject, put } from './serializers.js'

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
 * this session did not change; keys it did change keep this session's value. `skip` is never
 * touched (the id). Returns the keys whose value was taken from theirs.
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
