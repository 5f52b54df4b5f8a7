/**
 * A serializer turns session data into the string a store keeps and back. `copy` is what makes
 * the tied object truthful: every value written to a session goes through it, so the object
 * shows after a write exactly what a reload will show, and a value the format cannot keep is
 * refused with a `TypeError` naming its path, before anything changes.
 */
export interface Serializer {
  /** Shown in error messages. */
  readonly name: string
  /** Any value this serializer keeps (the whole session or one of its values) to text. */
  stringify(value: unknown): string
  /** Text written by `stringify` back to the value. Throws on text it cannot read. */
  parse(text: string): unknown
  /**
   * A deep copy of `value` as a round trip through this serializer gives it back (so no
   * object is shared with the caller), or a `TypeError` naming `path` when the value cannot
   * be kept. Without it, tied-session copies through `stringify` + `parse`.
   */
  copy?(value: unknown, path: string): unknown
  /**
   * Like `copy`, but keeps the caller's own objects wherever the format keeps them as they are,
   * normalizing them in place (an `undefined` property deleted, an array hole set to null), so
   * that an object assigned to a session stays live: a later write through the caller's own
   * reference is a write to the session. A tied view inside is copied, or, when `move` says yes
   * for its object (an object this very write takes out of the session), stored as that object, so
   * the view keeps writing where it now is, as in plain JavaScript. Without `adopt`, an assigned
   * value is copied, and writes through the caller's reference are not seen.
   */
  adopt?(value: unknown, path: string, move?: (target: object) => boolean): unknown
  /**
   * True when the text is bytes, one character per byte (Latin-1), as Storable's: the store keeps
   * the bytes, not their UTF-8 encoding. @default false
   */
  readonly binary?: boolean
  /** The memcached client flags a new session is written with (Perl's Cache::Memcached: 1 = Storable). @default 0 */
  readonly flags?: number
}

/** The path of `key` inside `parent`, as code would write it: `cart.items[2].when`. */
export function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`
  const plain = /^[A-Za-z_$][\w$]*$/.test(key)
  if (parent === '') return plain ? key : `[${JSON.stringify(key)}]`
  return plain ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'number') return String(value)
  if (typeof value === 'bigint') return 'a BigInt'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'symbol') return 'a symbol'
  if (typeof value === 'undefined') return 'undefined'
  const name = (value as object).constructor?.name
  return name ? `a ${name}` : 'an object without prototype'
}

/** Throws the TypeError for a value the serializer cannot keep at `path`. */
export function refuse(serializer: string, path: string, value: unknown, hint: string): never {
  throw new TypeError(`tied-session: cannot store ${describe(value)} at ${path || '(root)'} with the ${serializer} serializer${hint}`)
}

/** Deepest level an object may sit at in a session (a top-level value is level 1). */
export const MAX_DEPTH = 100

/**
 * Throws a TypeError naming the path of the first object inside `value` that sits deeper than
 * {@link MAX_DEPTH}, when `value` sits at level `depth`: deeper data cannot be saved (every
 * serializer recurses, and V8's stack ends a few thousand levels down), so it is refused at the door.
 */
export function checkDepth(value: unknown, path: string, depth: number): void {
  if (typeof value !== 'object' || value === null) return
  // the walk builds no path: it is spelled out only for the error (this runs on every load)
  const trail = tooDeep(value, depth)
  if (trail === undefined) return
  let at = path
  for (const step of trail) at = typeof step === 'object' ? `${at}.<${step.label}>` : childPath(at, step)
  throw new TypeError(`tied-session: the value at ${at || '(root)'} is nested deeper than ${MAX_DEPTH} levels, the most a session keeps`)
}

type Step = string | number | { label: string }

/** The steps from `value` down to the first object deeper than MAX_DEPTH, or undefined when there is none. */
function tooDeep(value: unknown, depth: number): Step[] | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  if (depth > MAX_DEPTH) return []
  const down = (child: unknown, step: Step): Step[] | undefined => {
    const trail = tooDeep(child, depth + 1)
    trail?.unshift(step)
    return trail
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const child = value[i]
      if (typeof child === 'object' && child !== null) {
        const trail = down(child, i)
        if (trail) return trail
      }
    }
  } else if (value instanceof Map) {
    let i = 0
    for (const [k, v] of value) {
      const trail = down(k, { label: `key ${i}` }) ?? down(v, { label: `value ${i}` })
      if (trail) return trail
      i++
    }
  } else if (value instanceof Set) {
    let i = 0
    for (const v of value) {
      const trail = down(v, { label: `item ${i++}` })
      if (trail) return trail
    }
  } else {
    for (const key in value) {
      if (!Object.hasOwn(value, key)) continue
      const child = (value as Record<string, unknown>)[key]
      if (typeof child === 'object' && child !== null) {
        const trail = down(child, key)
        if (trail) return trail
      }
    }
  }
  return undefined
}

/** True for `{}`-made and null-prototype objects: the objects a session keeps as they are. */
export function isPlainObject(value: object): value is Record<string, unknown> {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Sets `key` on `out` without ever touching a prototype (a key named `__proto__` is data). */
export function put(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(out, key, { value, writable: true, enumerable: true, configurable: true })
  else out[key] = value
}

/**
 * Tied views (the session's proxies) answer this symbol with the plain object under them, so
 * that a view assigned elsewhere is stored as a copy of its data, never as a proxy or an alias.
 */
export const VIEW_TARGET = Symbol('tied-session view target')

/** The plain object under a tied view, or undefined for any other object. */
export function viewTarget(value: object): object | undefined {
  return (value as Record<symbol, object | undefined>)[VIEW_TARGET]
}

/** Walks a child value. */
export type Recurse = (v: unknown, p: string) => unknown
/** Decides what a non-container value becomes (or refuses it). */
export type Leaf = (value: unknown, path: string) => unknown
/**
 * Takes over for an object that is not a plain object or array (Date, Map, Set...): `adopting`
 * says whether to keep `value` itself (checking and normalizing its contents in place) or copy it.
 */
export type Exotic = (value: object, path: string, recurse: Recurse, adopting: boolean) => unknown

/** True when `value` can stay the session's own object as it is: extensible, every property a plain writable, enumerable, configurable data property. */
function keepable(value: object, keys: string[]): boolean {
  if (!Object.isExtensible(value)) return false
  if (Object.getOwnPropertyNames(value).length !== keys.length + (Array.isArray(value) ? 1 : 0)) return false // non-enumerables
  for (const key of keys) {
    const desc = Object.getOwnPropertyDescriptor(value, key)!
    if (!('value' in desc) || !desc.writable || !desc.configurable) return false
  }
  return true
}

/**
 * Walks a value depth first with cycle detection, in one of two modes:
 *
 * - **copy**: a deep copy as a round trip through the format gives it back; object properties
 *   whose value is `undefined` are dropped and array holes become null, as JSON does;
 * - **adopt**: the same result, reached by keeping the caller's own objects wherever they can be
 *   kept as they are and normalizing them in place (undefined properties deleted, holes set to
 *   null), so that a caller who holds them and writes into them later writes into the session.
 *   An object that cannot be kept (frozen, with accessors or hidden properties) is rebuilt, its
 *   children still adopted; a tied view is copied.
 *
 * Either mode throws a TypeError naming the path of a value the format cannot keep.
 */
export function walker(name: string, leaf: Leaf, exotic: Exotic) {
  const ancestors = new Set<object>()
  let keep: ((target: object) => boolean) | undefined
  const walk = (value: unknown, path: string, adopting: boolean): unknown => {
    if (typeof value !== 'object' || value === null) return leaf(value, path)
    const target = viewTarget(value)
    // a view's object is moved (it is session data already) where the session allows it, else copied
    if (target !== undefined) return adopting && keep?.(target) ? target : walk(target, path, false)
    if (ancestors.has(value)) refuse(name, path, value, ': it contains itself (a cycle)')
    ancestors.add(value)
    const recurse: Recurse = (v, p) => walk(v, p, adopting)
    try {
      if (Array.isArray(value)) {
        // Object.keys lists indices first: a last key that is no index is a property JSON drops
        const keys = Object.keys(value)
        const last = keys[keys.length - 1]
        const keep = adopting && (last === undefined || /^\d+$/.test(last)) && keepable(value, keys)
        const out = keep ? value : new Array<unknown>(value.length)
        for (let i = 0; i < value.length; i++) {
          // JSON writes a hole as null
          const v = i in value ? walk(value[i], childPath(path, i), adopting) : null
          if (!keep || !Object.is(v, value[i]) || !(i in value)) out[i] = v
        }
        return out
      }
      if (!isPlainObject(value)) return exotic(value, path, recurse, adopting)
      if (Object.getOwnPropertySymbols(value).some((s) => Object.prototype.propertyIsEnumerable.call(value, s))) {
        refuse(name, path, value, ': it has symbol keys, which are not stored')
      }
      const keys = Object.keys(value)
      const keep = adopting && keepable(value, keys)
      const out: Record<string, unknown> = keep ? value : {}
      for (const key of keys) {
        const v = value[key]
        if (v === undefined) {
          if (keep) delete value[key]
          continue
        }
        const w = walk(v, childPath(path, key), adopting)
        if (!keep || !Object.is(w, v)) put(out, key, w)
      }
      return out
    } finally {
      ancestors.delete(value)
    }
  }
  return {
    copy: (value: unknown, path: string) => walk(value, path, false),
    adopt: (value: unknown, path: string, move?: (target: object) => boolean) => {
      keep = move
      try {
        return walk(value, path, true)
      } finally {
        keep = undefined
      }
    },
  }
}
