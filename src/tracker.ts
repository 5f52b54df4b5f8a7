/**
 * The Proxy over session data. Traps are synchronous and only record which top-level keys
 * changed; I/O happens in the session's flush. The data under the proxy is always plain
 * (never a proxy): every written value is first copied by the serializer.
 */
import { childPath, isPlainObject, put } from './serializers.js'

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

/**
 * The root proxy answers this private symbol with its hooks (the session), so that `save(s)`
 * and the other verbs find the session without a WeakMap from proxy to session: V8's young-
 * generation GC treats WeakMap values as strong, and the session references its proxy, so every
 * such entry survived minor GCs and each tied session was promoted to the old generation.
 */
export const HOOKS = Symbol('tied-session hooks')

/** The read-only id field every tied object has, as in Apache::Session. */
export const ID_FIELD = '_session_id'

type Data = Record<string | symbol, unknown>

const isTrackable = (value: object): boolean => Array.isArray(value) || isPlainObject(value)

/** The array methods that move or insert elements, run on the raw array (see Tracker.arrayMethod). */
const ARRAY_METHODS = new Set<string | symbol>(['push', 'pop', 'shift', 'unshift', 'splice', 'sort', 'reverse'])
type ArrayMethod = 'push' | 'pop' | 'shift' | 'unshift' | 'splice' | 'sort' | 'reverse'

/**
 * The handler of a nested object's proxy: which top-level key it belongs to, and where it was
 * last reached from (both updated when the same object is reached another way). Its path, for
 * error messages, is only spelled out when a write needs it: reads stay cheap.
 */
class Nested implements ProxyHandler<Data> {
  constructor(
    private readonly tracker: Tracker,
    public top: string,
    /** The handler of the object it was reached through; undefined for a top-level value. */
    public parent: Nested | undefined,
    /** Its key there (a number in an array). */
    public key: string | number,
  ) {}
  /** Its path as last spelled out, and its parent's path then: still right while those match. */
  spelled: string | undefined
  spelledUnder: string | undefined
  /** Its path from the session, as `cart.items[2]`. */
  get path(): string {
    return pathOf(this, 100)
  }
  get(target: Data, key: string | symbol) {
    return this.tracker.read(target, key, this)
  }
  set(target: Data, key: string | symbol, value: unknown) {
    return this.tracker.write(target, key, value, this.top, this.path)
  }
  deleteProperty(target: Data, key: string | symbol) {
    return this.tracker.remove(target, key, this.top)
  }
  defineProperty(target: Data, key: string | symbol, desc: PropertyDescriptor) {
    return this.tracker.define(target, key, desc, this.top, this.path)
  }
  getOwnPropertyDescriptor(target: Data, key: string | symbol) {
    return this.tracker.describe(target, key)
  }
}

/** The path of `view`, of at most `steps` steps: data made cyclic behind the tracker's back has no end. */
function pathOf(view: Nested, steps: number): string {
  const under = view.parent === undefined || steps === 1 ? '' : pathOf(view.parent, steps - 1)
  if (view.spelled === undefined || view.spelledUnder !== under) {
    view.spelledUnder = under
    view.spelled = childPath(under, view.key)
  }
  return view.spelled
}

/**
 * One session's tracking: the handler of its root proxy, and what its nested proxies share.
 * Traps are methods on a prototype, not closures, so a session costs a few objects.
 */
class Tracker implements ProxyHandler<Data> {
  /** raw nested object -> its proxy and handler; made on the first nested read */
  private views: WeakMap<object, { proxy: object; handler: Nested }> | undefined
  /** nested proxy -> raw object */
  private raws: WeakMap<object, object> | undefined
  // Spread, Object.entries and Object.assign({}, s) read each key's descriptor and then its
  // value; structuredClone refuses proxies, so in exactly that sequence the raw value is
  // handed out, and the session compares that key at the next flush instead.
  private described: { target: object; key: string | symbol } | undefined
  private disposer: (() => Promise<void>) | undefined

  constructor(private readonly hooks: TrackerHooks) {}

  get(target: Data, key: string | symbol) {
    if (typeof key === 'symbol') {
      if (key === HOOKS) return this.hooks
      if (key === Symbol.asyncDispose) return (this.disposer ??= () => this.hooks.dispose())
    }
    return this.read(target, key, undefined)
  }
  set(target: Data, key: string | symbol, value: unknown) {
    if (key === ID_FIELD) throw new TypeError(`tied-session: ${ID_FIELD} is read-only; use regenerate(s) for a new id`)
    return this.write(target, key, value, key as string, '')
  }
  deleteProperty(target: Data, key: string | symbol) {
    if (key === ID_FIELD) throw new TypeError(`tied-session: ${ID_FIELD} cannot be deleted; use destroy(s)`)
    return this.remove(target, key, key as string)
  }
  defineProperty(target: Data, key: string | symbol, desc: PropertyDescriptor) {
    if (key === ID_FIELD) throw new TypeError(`tied-session: ${ID_FIELD} is read-only`)
    return this.define(target, key, desc, key as string, '')
  }
  getOwnPropertyDescriptor(target: Data, key: string | symbol) {
    const desc = this.describe(target, key)
    // the id is reported read-only; allowed because the property stays configurable
    if (key === ID_FIELD && desc !== undefined) desc.writable = false
    return desc
  }

  private unwrap(value: unknown): unknown {
    return typeof value === 'object' && value !== null ? (this.raws?.get(value) ?? value) : value
  }

  /** A read of `target[key]`, reached through `via` (undefined: the root): nested objects come back as views. */
  read(target: Data, key: string | symbol, via: Nested | undefined): unknown {
    const described = this.described
    this.described = undefined
    const value = target[key]
    if (typeof value !== 'object' || value === null || typeof key === 'symbol' || !Object.hasOwn(target, key)) {
      if (typeof value === 'function' && via !== undefined && ARRAY_METHODS.has(key) && Array.isArray(target)) {
        const native = (Array.prototype as unknown as Record<string | symbol, unknown>)[key]
        if (value === native) return this.arrayMethod(target, key as ArrayMethod, via)
      }
      return value
    }
    const owner = via === undefined ? key : via.top
    if ((described !== undefined && described.target === target && described.key === key) || !isTrackable(value)) {
      this.hooks.expose(owner)
      return value
    }
    const at = via !== undefined && Array.isArray(target) ? Number(key) : key
    const views = (this.views ??= new WeakMap())
    let view = views.get(value)
    if (view === undefined) {
      const handler = new Nested(this, owner, via, at)
      view = { proxy: new Proxy(value as Data, handler), handler }
      views.set(value, view)
      ;(this.raws ??= new WeakMap()).set(view.proxy, value)
    } else {
      const { handler } = view
      handler.top = owner
      if (handler.parent !== via || handler.key !== at) {
        handler.parent = via
        handler.key = at
        handler.spelled = undefined
      }
    }
    return view.proxy
  }

  /**
   * An array method that reorders or inserts, run on the raw array as plain JavaScript runs it:
   * the elements it moves stay the same objects (a view held from before still writes into the
   * session), only inserted values are copied, and a 1,000-element `unshift` moves pointers
   * instead of copying every element again through the traps. Called on anything but the array's
   * own view, it is the plain method.
   */
  private arrayMethod(target: unknown[], name: ArrayMethod, via: Nested): (...args: unknown[]) => unknown {
    const native = Array.prototype[name] as (...args: unknown[]) => unknown
    const proxy = this.views?.get(target)?.proxy
    const { hooks } = this
    const insert = (values: unknown[], from: number) =>
      values.map((value, i) => hooks.copy(this.unwrap(value), childPath(via.path, from + i)))
    return function (this: unknown, ...args: unknown[]): unknown {
      if (this !== proxy) return native.apply(this, args)
      hooks.writable()
      const length = target.length
      let call = args
      if (name === 'push') call = insert(args, length)
      else if (name === 'unshift') call = insert(args, 0)
      else if (name === 'splice' && args.length > 2) {
        const start = Math.trunc(Number(args[0])) || 0
        call = [args[0], args[1], ...insert(args.slice(2), start < 0 ? Math.max(length + start, 0) : Math.min(start, length))]
      }
      const changes =
        name === 'push' || name === 'unshift'
          ? args.length > 0
          : name === 'sort' || name === 'reverse'
            ? length > 1
            : length > 0 || args.length > 2
      try {
        const result = native.apply(target, call)
        return result === target ? proxy : result // sort and reverse return the array: its view
      } finally {
        if (changes) hooks.change(via.top)
      }
    }
  }

  write(target: Data, key: string | symbol, value: unknown, top: string, path: string): boolean {
    this.described = undefined
    this.hooks.writable()
    if (typeof key === 'symbol') throw new TypeError(`tied-session: cannot store a symbol-keyed property at ${path}`)
    const isArray = Array.isArray(target)
    if (isArray && key === 'length') {
      if (target.length !== value) {
        ;(target as unknown as unknown[]).length = value as number
        this.hooks.change(top)
      }
      return true
    }
    if (value === undefined && !isArray) return this.remove(target, key, top)
    const before = target[key]
    if (Object.is(before, value) && (typeof value !== 'object' || value === null) && Object.hasOwn(target, key)) {
      return true
    }
    const at = isArray && /^\d+$/.test(key) ? childPath(path, Number(key)) : childPath(path, key)
    put(target, key, this.hooks.copy(this.unwrap(value), at))
    this.hooks.change(top)
    return true
  }

  remove(target: Data, key: string | symbol, top: string): boolean {
    this.described = undefined
    this.hooks.writable()
    if (Object.hasOwn(target, key)) {
      // JSON has no holes: a deleted array element reads back as null, so it shows null now
      // (pop, shift and splice delete trailing elements and then shorten the array: no change)
      if (Array.isArray(target) && typeof key === 'string' && /^\d+$/.test(key)) (target as Data)[key] = null
      else delete target[key]
      this.hooks.change(top)
    }
    return true
  }

  define(target: Data, key: string | symbol, desc: PropertyDescriptor, top: string, path: string): boolean {
    if (!('value' in desc) || desc.get !== undefined || desc.set !== undefined) {
      throw new TypeError(`tied-session: cannot store an accessor at ${childPath(path, String(key))}`)
    }
    return this.write(target, key, desc.value, top, path)
  }

  describe(target: Data, key: string | symbol): PropertyDescriptor | undefined {
    this.described = { target, key }
    return Reflect.getOwnPropertyDescriptor(target, key)
  }
}

/** The proxy tying `data` to `hooks`; `data[ID_FIELD]` must already hold the id. */
export function track<T extends object>(data: Data, hooks: TrackerHooks): T {
  return new Proxy(data, new Tracker(hooks)) as T
}
