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

function refuse(serializer: string, path: string, value: unknown, hint: string): never {
  throw new TypeError(`tied-session: cannot store ${describe(value)} at ${path || '(root)'} with the ${serializer} serializer${hint}`)
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
 * Walks a value depth first with cycle detection; `leaf` decides what a non-container value
 * becomes (or refuses it), `exotic` may take over for an object that is not a plain object or
 * array. Object properties whose value is `undefined` are dropped, as JSON does.
 */
function walker(
  name: string,
  leaf: (value: unknown, path: string) => unknown,
  exotic: (value: object, path: string, recurse: (v: unknown, p: string) => unknown) => unknown,
): (value: unknown, path: string) => unknown {
  const ancestors = new Set<object>()
  const walk = (value: unknown, path: string): unknown => {
    if (typeof value !== 'object' || value === null) return leaf(value, path)
    if (ancestors.has(value)) refuse(name, path, value, ': it contains itself (a cycle)')
    ancestors.add(value)
    try {
      if (Array.isArray(value)) {
        const out = new Array<unknown>(value.length)
        for (let i = 0; i < value.length; i++) out[i] = walk(value[i], childPath(path, i))
        return out
      }
      if (!isPlainObject(value)) return exotic(value, path, walk)
      if (Object.getOwnPropertySymbols(value).some((s) => Object.prototype.propertyIsEnumerable.call(value, s))) {
        refuse(name, path, value, ': it has symbol keys, which are not stored')
      }
      const out: Record<string, unknown> = {}
      for (const key of Object.keys(value)) {
        const v = value[key]
        if (v !== undefined) put(out, key, walk(v, childPath(path, key)))
      }
      return out
    } finally {
      ancestors.delete(value)
    }
  }
  return walk
}

const jsonCopy = walker(
  'json',
  (value, path) => {
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return value
      case 'number':
        if (!Number.isFinite(value)) refuse('json', path, value, '; use the rich serializer to keep it')
        return value === 0 ? 0 : value // JSON writes -0 as 0
      case 'undefined':
        // in an array (objects drop undefined before we get here): JSON would write null
        refuse('json', path, value, ' (JSON writes it as null); use null or the rich serializer')
        break
      default:
        if (value === null) return null
    }
    return refuse('json', path, value, typeof value === 'bigint' ? '; use the rich serializer to keep it' : '')
  },
  (value, path) =>
    refuse(
      'json',
      path,
      value,
      '; store plain objects, arrays, strings, finite numbers, booleans, null (or use the rich serializer for Date, Map, Set, BigInt)',
    ),
)

/**
 * The default serializer: JSON text, readable by any other language. Keeps plain objects,
 * arrays, strings, finite numbers, booleans and null; refuses anything JSON would change.
 */
export const json: Serializer = {
  name: 'json',
  stringify: (value) => JSON.stringify(value),
  parse: (text) => JSON.parse(text),
  copy: jsonCopy,
}

/*
 * The rich format is JSON in which a value JSON cannot say is an object with one key "$":
 * {"$":"d","v":"2026-01-01T00:00:00.000Z"} a Date, {"$":"m","v":[[k,v],...]} a Map,
 * {"$":"s","v":[...]} a Set, {"$":"b","v":"12"} a BigInt, {"$":"u"} undefined,
 * {"$":"n","v":"NaN"|"Infinity"|"-Infinity"|"-0"} a number, and {"$":"o","v":{...}} a plain
 * object that itself has a "$" key, so user data can never be mistaken for a tag.
 */
type Tagged = { $: string; v?: unknown }

function richLeaf(value: unknown, path: string): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'bigint':
    case 'undefined':
      return value
    case 'number':
      return value
    default:
      if (value === null) return null
      return refuse('rich', path, value, '')
  }
}

function richExotic(value: object, path: string, recurse: (v: unknown, p: string) => unknown): unknown {
  if (value instanceof Date) return new Date(value.getTime())
  if (value instanceof Map) {
    const out = new Map()
    let i = 0
    for (const [k, v] of value) {
      out.set(recurse(k, `${path}.<key ${i}>`), recurse(v, `${path}.<value ${i}>`))
      i++
    }
    return out
  }
  if (value instanceof Set) {
    const out = new Set()
    let i = 0
    for (const v of value) out.add(recurse(v, `${path}.<item ${i++}>`))
    return out
  }
  return refuse('rich', path, value, '; the rich serializer keeps plain objects, arrays, Date, Map, Set, BigInt and all numbers')
}

const richWalk = walker('rich', richLeaf, richExotic)

function encode(value: unknown): unknown {
  switch (typeof value) {
    case 'undefined':
      return { $: 'u' }
    case 'bigint':
      return { $: 'b', v: value.toString() }
    case 'number':
      if (Number.isNaN(value)) return { $: 'n', v: 'NaN' }
      if (value === Infinity) return { $: 'n', v: 'Infinity' }
      if (value === -Infinity) return { $: 'n', v: '-Infinity' }
      if (Object.is(value, -0)) return { $: 'n', v: '-0' }
      return value
    case 'object': {
      if (value === null) return null
      if (Array.isArray(value)) return value.map(encode)
      if (value instanceof Date) return { $: 'd', v: Number.isNaN(value.getTime()) ? null : value.toISOString() }
      if (value instanceof Map) return { $: 'm', v: [...value].map(([k, v]) => [encode(k), encode(v)]) }
      if (value instanceof Set) return { $: 's', v: [...value].map(encode) }
      const out: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(value)) if (v !== undefined) put(out, k, encode(v))
      return Object.hasOwn(out, '$') ? { $: 'o', v: out } : out
    }
    default:
      return value
  }
}

function decode(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value
  if (Array.isArray(value)) return value.map(decode)
  const obj = value as Record<string, unknown>
  if (Object.hasOwn(obj, '$')) {
    const { $: tag, v } = obj as Tagged
    switch (tag) {
      case 'u':
        return undefined
      case 'b':
        return BigInt(v as string)
      case 'n':
        return v === '-0' ? -0 : Number(v)
      case 'd':
        return new Date(v === null ? Number.NaN : (v as string))
      case 'm':
        return new Map((v as [unknown, unknown][]).map(([k, x]) => [decode(k), decode(x)]))
      case 's':
        return new Set((v as unknown[]).map(decode))
      case 'o':
        return decodeObject(v as Record<string, unknown>)
      default:
        throw new SyntaxError(`unknown rich tag ${JSON.stringify(tag)}`)
    }
  }
  return decodeObject(obj)
}

function decodeObject(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(obj)) put(out, k, decode(obj[k]))
  return out
}

/**
 * A serializer that keeps Date, Map, Set, BigInt, undefined, NaN, ±Infinity and -0, at any
 * depth; its output is still valid JSON (tagged objects), so other tools can read it.
 *
 * @example
 * const s = await tieSession(undefined, { serializer: rich })
 * s.seen = new Set(['home']); s.at = new Date()
 */
export const rich: Serializer = {
  name: 'rich',
  stringify: (value) => JSON.stringify(encode(value)),
  parse: (text) => decode(JSON.parse(text)),
  copy: richWalk,
}
