/**
 * Dotted paths into session data (`cart.items.0.sku`) and `path=value` arguments, whose value
 * is JSON when it parses as JSON and a string otherwise.
 */
import { InputError, UsageError } from './errors.js'

/** The session field holding the id: read-only. */
export const ID_FIELD = '_session_id'
/** When the session was created (Unix seconds): read-only, as in a tie. */
export const UTIME_FIELD = '_utime'

type Container = Record<string, unknown> | unknown[]

/** A parsed `path=value` argument. */
export interface Assignment {
  path: string
  segments: string[]
  value: unknown
  /** The text after `=`, as given. */
  raw: string
}

/** Keys that would reach a prototype rather than data. */
const FORBIDDEN = new Set(['__proto__', 'prototype', 'constructor'])
const INDEX = /^(0|[1-9]\d{0,8})$/

/** `cart.items.0` -> ['cart', 'items', '0']; throws UsageError for an empty or unsafe segment. */
export function splitPath(path: string, command: string, writing = true): string[] {
  const segments = path.split('.')
  if (segments.some((s) => s === ''))
    throw new UsageError(`bad path ${JSON.stringify(path)}: empty segment (paths look like cart.items.0.sku)`, command)
  const unsafe = segments.find((s) => FORBIDDEN.has(s))
  if (unsafe !== undefined) throw new UsageError(`bad path ${JSON.stringify(path)}: "${unsafe}" cannot be a path segment`, command)
  if (writing && (segments[0] === ID_FIELD || segments[0] === UTIME_FIELD)) throw new UsageError(`${segments[0]} is read-only`, command)
  return segments
}

/** The value of a `path=value` argument: JSON when it parses as JSON, else the text itself. */
export function parseValue(raw: string): unknown {
  try {
    return JSON.parse(raw)
  } catch {
    return raw
  }
}

/** Parses `path=value` (the first `=` splits). */
export function parseAssignment(arg: string, command: string, writing = true): Assignment {
  const at = arg.indexOf('=')
  if (at <= 0) throw new UsageError(`expected path=value, got ${JSON.stringify(arg)}`, command)
  const path = arg.slice(0, at)
  const raw = arg.slice(at + 1)
  return { path, segments: splitPath(path, command, writing), value: parseValue(raw), raw }
}

const isContainer = (value: unknown): value is Container => typeof value === 'object' && value !== null

function child(node: Container, segment: string): unknown {
  if (Array.isArray(node)) return INDEX.test(segment) ? node[Number(segment)] : undefined
  return Object.hasOwn(node, segment) ? node[segment] : undefined
}

/** Errors of a path against the data (not the usage): an InputError, one line. */
function assign(node: Container, segment: string, value: unknown, where: string): void {
  if (!Array.isArray(node)) {
    node[segment] = value
    return
  }
  if (!INDEX.test(segment)) throw new InputError(`cannot set ${where}: its parent is an array; use an index (0, 1, ...)`)
  const index = Number(segment)
  // JSON has no holes: an index past the end would store nulls
  if (index > node.length) throw new InputError(`cannot set ${where}: index ${index} is past the end of an array of ${node.length}`)
  node[index] = value
}

/**
 * Sets `segments` in `data` to `value`, making missing objects (or arrays, before an index) on the
 * way; a path the data cannot take is an InputError.
 */
export function setPath(data: Record<string, unknown>, segments: string[], value: unknown): void {
  let node: Container = data
  for (let i = 0; i < segments.length - 1; i++) {
    const segment = segments[i]!
    const where = segments.slice(0, i + 1).join('.')
    let next = child(node, segment)
    if (next === undefined || next === null) {
      next = INDEX.test(segments[i + 1]!) ? [] : {}
      assign(node, segment, next, where)
    } else if (!isContainer(next)) {
      throw new InputError(`cannot set ${segments.join('.')}: ${where} holds ${JSON.stringify(next)}, not an object or array`)
    }
    node = next as Container
  }
  assign(node, segments.at(-1)!, value, segments.join('.'))
}

/** Removes `segments` from `data` (an array element is spliced out); false when it was not there. */
export function unsetPath(data: Record<string, unknown>, segments: string[]): boolean {
  let node: unknown = data
  for (const segment of segments.slice(0, -1)) {
    node = isContainer(node) ? child(node, segment) : undefined
  }
  const last = segments.at(-1)!
  if (!isContainer(node) || child(node, last) === undefined) return false
  if (Array.isArray(node)) node.splice(Number(last), 1)
  else delete node[last]
  return true
}

/** The value at `segments` in `data`, or undefined. */
export function getPath(data: unknown, segments: string[]): unknown {
  let node = data
  for (const segment of segments) node = isContainer(node) ? child(node, segment) : undefined
  return node
}

/** Every leaf of `data` as [path, value], depth first; empty objects and arrays are leaves. */
export function flatten(data: unknown, prefix = ''): Array<[string, unknown]> {
  if (!isContainer(data)) return [[prefix, data]]
  const entries = Array.isArray(data) ? data.map((v, i) => [String(i), v] as const) : Object.entries(data)
  if (entries.length === 0) return [[prefix, data]]
  return entries.flatMap(([key, value]) => flatten(value, prefix === '' ? key : `${prefix}.${key}`))
}

/**
 * A value as `set` would take it back: strings bare unless they would parse as something else
 * ("42", "true", "") and then as JSON, every other value as JSON.
 */
export function showValue(value: unknown): string {
  if (typeof value === 'string' && value !== '' && parseValue(value) === value && !/[\n\r]/.test(value)) return value
  return JSON.stringify(value) ?? String(value)
}
