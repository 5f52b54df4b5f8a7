/**
 * The Proxy over session data. Traps are synchronous and only record which top-level keys
 * changed; I/O happens in the session's flush. The data under the proxy is always plain
 * (never a proxy): every written value is first copied by the serializer.
 */
import { childPath } from './serializers.js'

/** What the tracker asks of the session it belongs to. */
export interface TrackerHooks {
  /** The stored copy of a written value (serializer copy); throws a TypeError naming `path`. */
  copy(value: unknown, path: string): unknown
  /** Top-level `key` changed (set, delete, or a nested mutation under it). */
  change(key: string): void
  /**
   * The raw object under top-level `key` was handed out untracked (to a spread, an
   * `Object.entries`, or a Date/Map/Set): the session must compare it at the next flush.
   */
  expose(key: string): void
  /** Throws when the session no longer takes writes (untied or destroyed). */
  writable(): void
  /** `await using` support: flush and release. */
  dispose(): Promise<void>
}

/** The read-only id field every tied object has, as in Apache::Session. */
export const ID_FIELD = '_session_id'

type Data = Record<string | symbol, unknown>

interface ViewState {
  top: string
  path: string
}

const isTrackable = (value: object): boolean => {
  if (Array.isArray(value)) return true
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Sets a data property without ever touching a prototype (`__proto__` is a plain key here). */
function assign(target: Data, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true })
  } else target[key] = value
}

/** The proxy tying `data` to `hooks`; `data[ID_FIELD]` must already hold the id. */
export function track<T extends object>(data: Data, hooks: TrackerHooks): T {
  const views = new WeakMap<object, { proxy: object; state: ViewState }>()
  const raw = new WeakMap<object, object>()
  // Spread, Object.entries and Object.assign({}, s) read each key's descriptor and then its
  // value; structuredClone refuses proxies, so in exactly that sequence the raw value is
  // handed out, and the session compares that key at the next flush instead.
  let described: { target: object; key: string | symbol } | undefined

  const unwrap = (value: unknown): unknown => (typeof value === 'object' && value !== null ? (raw.get(value) ?? value) : value)

  const read = (target: Data, key: string | symbol, top: string | undefined, path: string): unknown => {
    const justDescribed = described !== undefined && described.target === target && described.key === key
    described = undefined
    const value = target[key]
    if (typeof value !== 'object' || value === null || typeof key === 'symbol' || !Object.hasOwn(target, key)) {
      return value
    }
    const owner = top ?? key
    if (justDescribed || !isTrackable(value)) {
      hooks.expose(owner)
      return value
    }
    const at = top === undefined ? childPath('', key) : childPath(path, Array.isArray(target) ? Number(key) : key)
    let view = views.get(value)
    if (view === undefined) {
      const state = { top: owner, path: at }
      view = { proxy: new Proxy(value, nested(state)), state }
      views.set(value, view)
      raw.set(view.proxy, value)
    } else {
      view.state.top = owner
      view.state.path = at
    }
    return view.proxy
  }

  const write = (target: Data, key: string | symbol, value: unknown, top: string, path: string): boolean => {
    described = undefined
    hooks.writable()
    if (typeof key === 'symbol') throw new TypeError(`tied-session: cannot store a symbol-keyed property at ${path}`)
    const isArray = Array.isArray(target)
    if (isArray && key === 'length') {
      if (target.length !== value) {
        ;(target as unknown as unknown[]).length = value as number
        hooks.change(top)
      }
      return true
    }
    const at = isArray && /^\d+$/.test(key) ? childPath(path, Number(key)) : childPath(path, key)
    if (value === undefined && !isArray) return remove(target, key, top)
    const before = target[key]
    if (Object.is(before, value) && (typeof value !== 'object' || value === null) && Object.hasOwn(target, key)) {
      return true
    }
    assign(target, key, hooks.copy(unwrap(value), at))
    hooks.change(top)
    return true
  }

  const remove = (target: Data, key: string | symbol, top: string): boolean => {
    described = undefined
    hooks.writable()
    if (Object.hasOwn(target, key)) {
      delete target[key]
      hooks.change(top)
    }
    return true
  }

  const define = (target: Data, key: string | symbol, desc: PropertyDescriptor, top: string, path: string) => {
    if (!('value' in desc) || desc.get !== undefined || desc.set !== undefined) {
      throw new TypeError(`tied-session: cannot store an accessor at ${childPath(path, String(key))}`)
    }
    return write(target, key, desc.value, top, path)
  }

  const describe = (target: Data, key: string | symbol) => {
    described = { target, key }
    return Reflect.getOwnPropertyDescriptor(target, key)
  }

  function nested(state: ViewState): ProxyHandler<Data> {
    return {
      get: (target, key) => read(target, key, state.top, state.path),
      set: (target, key, value) => write(target, key, value, state.top, state.path),
      deleteProperty: (target, key) => remove(target, key, state.top),
      defineProperty: (target, key, desc) => define(target, key, desc, state.top, state.path),
      getOwnPropertyDescriptor: describe,
    }
  }

  const root: ProxyHandler<Data> = {
    get(target, key) {
      if (key === Symbol.asyncDispose) return hooks.dispose
      return read(target, key, undefined, '')
    },
    set(target, key, value) {
      if (key === ID_FIELD) throw new TypeError(`tied-session: ${ID_FIELD} is read-only; use regenerate(s) for a new id`)
      return write(target, key, value, key as string, '')
    },
    deleteProperty(target, key) {
      if (key === ID_FIELD) throw new TypeError(`tied-session: ${ID_FIELD} cannot be deleted; use destroy(s)`)
      return remove(target, key, key as string)
    },
    defineProperty(target, key, desc) {
      if (key === ID_FIELD) throw new TypeError(`tied-session: ${ID_FIELD} is read-only`)
      return define(target, key, desc, key as string, '')
    },
    getOwnPropertyDescriptor(target, key) {
      const desc = describe(target, key)
      // the id is reported read-only; allowed because the property stays configurable
      if (key === ID_FIELD && desc !== undefined) desc.writable = false
      return desc
    },
  }
  return new Proxy(data, root) as T
}
