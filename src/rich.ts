/**
 * The `rich` serializer: JSON that also keeps Date, Map, Set, BigInt, undefined, NaN, ±Infinity
 * and -0, as tagged objects that other tools still read as JSON.
 */
import { asciiOnly } from './json.js'
import { put, refuse, walker, type Recurse, type Serializer } from './serializers.js'

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

function richExotic(value: object, path: string, recurse: Recurse, adopting: boolean): unknown {
  if (value instanceof Date) return adopting ? value : new Date(value.getTime())
  if (value instanceof Map) {
    const entries = [...value].map(([k, v], i) => [k, v, recurse(k, `${path}.<key ${i}>`), recurse(v, `${path}.<value ${i}>`)])
    // a Map is kept when its keys are: its values are replaced in place (set keeps the order)
    if (adopting && entries.every(([k, , k2]) => Object.is(k, k2))) {
      for (const [k, v, , v2] of entries) if (!Object.is(v, v2)) value.set(k, v2)
      return value
    }
    return new Map(entries.map(([, , k2, v2]) => [k2, v2]))
  }
  if (value instanceof Set) {
    const items = [...value].map((v, i) => [v, recurse(v, `${path}.<item ${i}>`)])
    if (adopting && items.every(([v, v2]) => Object.is(v, v2))) return value
    return new Set(items.map(([, v2]) => v2))
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
  stringify: (value) => asciiOnly(JSON.stringify(encode(value))),
  parse: (text) => decode(JSON.parse(text)),
  copy: richWalk.copy,
  adopt: richWalk.adopt,
}
