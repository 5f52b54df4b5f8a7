/**
 * The Proxy over session data. Traps are synchronous and only record which top-level keys
 * changed; I/O happens in the session's flush. Each trap decides from its arguments and the data
 * alone: no state is carried from one trap to the next. The data under the proxy is plain (never
 * a proxy): a written value is adopted or copied by the session's `place` hook first.
 *
 * Views. A nested object is read as a view (a proxy over that very object), made once per object.
 * A view is bound to its object, as a reference is in plain JavaScript: it writes into the session
 * as long as that object is part of the session. An assignment that replaces a value keeps the
 * objects of the old value that the new one contains (`s.cart = { ...s.cart, n: 1 }`), so their
 * views still write there; an object the caller removes (delete, splice, overwrite) is no longer
 * the session's, as in plain JavaScript. `reload` and a merge after a compare-and-swap conflict
 * update objects in place wherever the new data still has the same kind of object at the same
 * path, so views held across them keep writing at that path. A view whose object a reload or
 * merge replaced is stale: a write through it throws `ERR_STALE_VIEW` (never a silent write into
 * an object no one saves); reads still show its last data.
 */
import { SessionError } from './errors.js'
import { MAX_DEPTH, VIEW_TARGET, childPath, isPlainObject, put, viewTarget } from './serializers.js'

/** What the tracker asks of the session it belongs to. */
export interface TrackerHooks {
  /**
   * The value to store for a write at `path()` under top-level key `top`: the caller's own objects
   * adopted (they stay live) or a copy; views of objects inside `replaced` (the value this write
   * replaces) may be moved; `depth` is the level it is written at (1: a top-level value). Throws a
   * TypeError naming the path when it cannot be stored. (The path is spelled out only when needed:
   * a write of a string or a number never needs it.)
   */
  place(value: unknown, path: () => string, top: string, depth: number, replaced?: unknown): unknown
  /** Top-level `key` changed (set, delete, or a nested mutation under it). */
  change(key: string): void
  /**
   * A raw object under top-level `key` was handed out untracked (a Date, Map or Set, or what is
   * inside one): the session compares that key with its last written text at every flush.
   */
  loosen(key: string): void
  /**
   * Throws when the session no longer takes writes (untied or destroyed). `top`: the top-level key
   * the write is about to change (the session keeps its stored value first: the base of a merge).
   */
  writable(top?: string): void
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
/** The read-only session field holding when the session was created (Unix seconds; see lifetime.ts). */
export const UTIME_FIELD = '_utime'

/** The creation time (lifetime.ts) is the session's own: maxLifetime counts from it. */
const readOnlyUtime = () =>
  new TypeError(`tied-session: ${UTIME_FIELD} (when the session was created, Unix seconds) is read-only; maxLifetime counts from it`)

type Data = Record<string | symbol, unknown>

const isTrackable = (value: object): boolean => Array.isArray(value) || isPlainObject(value)
const isIndex = (key: string): boolean => /^(?:0|[1-9]\d*)$/.test(key)
/** Most nulls a write may add to an array at once (`a.length = n`, `a[n] = x`): JSON has no holes. */
const MAX_FILL = 1_000_000

/** The array methods that move or insert elements, run on the raw array (see Tracker.arrayMethod). */
const ARRAY_METHODS = new Set<string | symbol>(['push', 'pop', 'shift', 'unshift', 'splice', 'sort', 'reverse'])
type ArrayMethod = 'push' | 'pop' | 'shift' | 'unshift' | 'splice' | 'sort' | 'reverse'

function refusePrototype(): never {
  throw new TypeError('tied-session: a session object keeps its prototype (a prototype cannot be stored)')
}
function refuseFreeze(): never {
  throw new TypeError('tied-session: a session object cannot be frozen, sealed or made non-extensible')
}

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
  /** Its object left the session (see the module comment): writes through it throw. */
  stale = false
  /** Its path from the session, as `cart.items[2]`. */
  get path(): string {
    return pathOf(this, 100)
  }
  get(target: Data, key: string | symbol) {
    if (key === VIEW_TARGET) return target
    return this.tracker.read(target, key, this)
  }
  set(target: Data, key: string | symbol, value: unknown) {
    this.live()
    return this.tracker.write(target, key, value, this.top, undefined, this)
  }
  deleteProperty(target: Data, key: string | symbol) {
    this.live()
    return this.tracker.remove(target, key, this.top)
  }
  defineProperty(target: Data, key: string | symbol, desc: PropertyDescriptor) {
    this.live()
    return this.tracker.define(target, key, desc, this.top, this.path, this)
  }
  getOwnPropertyDescriptor(target: Data, key: string | symbol) {
    return this.tracker.describe(target, key, this)
  }
  setPrototypeOf(): boolean {
    return refusePrototype()
  }
  preventExtensions(): boolean {
    return refuseFreeze()
  }
  // has and ownKeys are the target's own: the default traps answer from the data itself
  /** Throws ERR_STALE_VIEW when this view's object is no longer part of the session. */
  live(): void {
    if (this.stale) {
      throw new SessionError(
        'ERR_STALE_VIEW',
        `the object at ${this.path} is no longer part of the session: a reload or another writer's save replaced it; read it again from the session to change it`,
      )
    }
  }
}

/** The level of `view`'s object (1: a top-level value), counted up to MAX_DEPTH + 1. */
function depthOf(view: Nested | undefined): number {
  let depth = 0
  for (let v = view; v !== undefined && depth <= MAX_DEPTH; v = v.parent) depth++
  return depth
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
  private disposer: (() => Promise<void>) | undefined

  constructor(private readonly hooks: TrackerHooks) {}

  get(target: Data, key: string | symbol) {
    if (typeof key === 'symbol') {
      if (key === HOOKS) return this.hooks
      if (key === Symbol.asyncDispose) return (this.disposer ??= () => this.hooks.dispose())
      if (key === VIEW_TARGET) return target
    }
    return this.read(target, key, undefined)
  }
  set(target: Data, key: string | symbol, value: unknown) {
    if (key === ID_FIELD) throw new TypeError(`tied-session: ${ID_FIELD} is read-only; use regenerate(s) for a new id`)
    if (key === UTIME_FIELD) throw readOnlyUtime()
    return this.write(target, key, value, key as string, '')
  }
  deleteProperty(target: Data, key: string | symbol) {
    if (key === ID_FIELD) throw new TypeError(`tied-session: ${ID_FIELD} cannot be deleted; use destroy(s)`)
    if (key === UTIME_FIELD) throw readOnlyUtime()
    return this.remove(target, key, key as string)
  }
  defineProperty(target: Data, key: string | symbol, desc: PropertyDescriptor) {
    if (key === ID_FIELD) throw new TypeError(`tied-session: ${ID_FIELD} is read-only`)
    if (key === UTIME_FIELD) throw readOnlyUtime()
    return this.define(target, key, desc, key as string, '')
  }
  getOwnPropertyDescriptor(target: Data, key: string | symbol) {
    const desc = this.describe(target, key, undefined)
    // the id is reported read-only; allowed because the property stays configurable
    if ((key === ID_FIELD || key === UTIME_FIELD) && desc !== undefined) desc.writable = false
    return desc
  }
  setPrototypeOf(): boolean {
    return refusePrototype()
  }
  preventExtensions(): boolean {
    return refuseFreeze()
  }

  /** A read of `target[key]`, reached through `via` (undefined: the root): nested objects come back as views. */
  read(target: Data, key: string | symbol, via: Nested | undefined): unknown {
    const value = target[key]
    if (typeof value !== 'object' || value === null || typeof key === 'symbol' || !Object.hasOwn(target, key)) {
      if (typeof value === 'function' && via !== undefined && ARRAY_METHODS.has(key) && Array.isArray(target)) {
        const native = (Array.prototype as unknown as Record<string | symbol, unknown>)[key]
        if (value === native) return this.arrayMethod(target, key as ArrayMethod, via)
      }
      return value
    }
    const owner = via === undefined ? key : via.top
    // an object with a view is trackable: the common read asks the map only
    let view = this.views?.get(value)
    if (view === undefined && !isTrackable(value)) {
      // a Date, Map or Set (rich serializer) is handed out as it is: its key is compared at each flush
      this.hooks.loosen(owner)
      return value
    }
    const at = via !== undefined && Array.isArray(target) ? Number(key) : key
    if (view === undefined) {
      const views = (this.views ??= new WeakMap())
      const handler = new Nested(this, owner, via, at)
      if (via?.stale) handler.stale = true
      view = { proxy: new Proxy(value as Data, handler), handler }
      views.set(value, view)
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
   * Marks the views of every object inside `value` stale: it left the session. Only objects that
   * were read as views are found, so data never read costs a walk and nothing else.
   */
  detach(value: unknown): void {
    const views = this.views
    if (views === undefined || typeof value !== 'object' || value === null || !isTrackable(value)) return
    const seen = new Set<object>()
    const walk = (v: unknown): void => {
      if (typeof v !== 'object' || v === null || seen.has(v) || !isTrackable(v)) return
      seen.add(v)
      const view = views.get(v)
      if (view !== undefined) view.handler.stale = true
      for (const child of Object.values(v)) walk(child)
    }
    walk(value)
  }

  /**
   * An array method that reorders or inserts, run on the raw array as plain JavaScript runs it:
   * the elements it moves stay the same objects (a view held from before still writes into the
   * session), only inserted values are placed, and a 1,000-element `unshift` moves pointers
   * instead of copying every element again through the traps. Called on anything but the array's
   * own view, it is the plain method.
   */
  private arrayMethod(target: unknown[], name: ArrayMethod, via: Nested): (...args: unknown[]) => unknown {
    const native = Array.prototype[name] as (...args: unknown[]) => unknown
    const proxy = this.views?.get(target)?.proxy
    const { hooks } = this
    const insert = (values: unknown[], from: number) =>
      values.map((value, i) => hooks.place(value, () => childPath(via.path, from + i), via.top, depthOf(via) + 1))
    return function (this: unknown, ...args: unknown[]): unknown {
      if (this !== proxy) return native.apply(this, args)
      hooks.writable(via.top)
      via.live()
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

  /** A write of `value` to `target[key]`, under top-level `top`, reached through `via`; `path`: where `target` is (when undefined, via's path, spelled out only if needed). */
  write(target: Data, key: string | symbol, value: unknown, top: string, path: string | undefined, via?: Nested): boolean {
    this.hooks.writable(top)
    const where = () => path ?? via?.path ?? ''
    if (typeof key === 'symbol') throw new TypeError(`tied-session: cannot store a symbol-keyed property at ${where()}`)
    const isArray = Array.isArray(target)
    if (isArray && key === 'length') return this.resize(target as unknown as unknown[], value, top, where())
    if (value === undefined && !isArray) return this.remove(target, key, top)
    const before = target[key]
    const has = Object.hasOwn(target, key)
    if (
      has &&
      (typeof value === 'object' && value !== null ? before !== undefined && viewTarget(value) === before : Object.is(before, value))
    ) {
      return true // the same value again (`s.a = s.a`): nothing changes
    }
    const index = isArray && isIndex(key) ? Number(key) : -1
    const depth = typeof value === 'object' && value !== null ? depthOf(via) + 1 : 0 // only objects nest
    const at = () => (index >= 0 ? childPath(where(), index) : childPath(where(), key))
    const stored = this.hooks.place(value, at, top, depth, has ? before : undefined)
    if (index > (target as unknown as unknown[]).length) fill(target as unknown as unknown[], index)
    put(target, key, stored)
    this.hooks.change(top)
    return true
  }

  /** `array.length = n`: a longer array is filled with null (JSON has no holes), a shorter one drops elements. */
  private resize(target: unknown[], value: unknown, top: string, path: string): boolean {
    const length = target.length
    if (length === value) return true
    const n = typeof value === 'number' ? value : Number(value)
    if (Number.isInteger(n) && n > length && n <= 2 ** 32 - 1) {
      fill(target, n, childPath(path, 'length'))
    } else {
      target.length = value as number // a length that is no array length throws a RangeError here, before any change
    }
    this.hooks.change(top)
    return true
  }

  remove(target: Data, key: string | symbol, top: string): boolean {
    this.hooks.writable(top)
    if (Object.hasOwn(target, key)) {
      // JSON has no holes: a deleted array element reads back as null, so it shows null now
      // (pop, shift and splice delete trailing elements and then shorten the array: no change)
      if (Array.isArray(target) && typeof key === 'string' && isIndex(key)) (target as Data)[key] = null
      else delete target[key]
      this.hooks.change(top)
    }
    return true
  }

  define(target: Data, key: string | symbol, desc: PropertyDescriptor, top: string, path: string, via?: Nested): boolean {
    const where = childPath(path, String(key))
    if (desc.get !== undefined || desc.set !== undefined) throw new TypeError(`tied-session: cannot store an accessor at ${where}`)
    const isLength = Array.isArray(target) && key === 'length'
    // a session property is a plain data property; attributes left out keep an existing property's
    // (all true) and default to false for a new one, which the proxy could not report truthfully
    const has = Object.hasOwn(target, key)
    const ok = (attr: boolean | undefined, wanted: boolean) => (attr ?? (has ? wanted : !wanted)) === wanted
    if (!ok(desc.writable, true) || !ok(desc.enumerable, !isLength) || !ok(desc.configurable, !isLength)) {
      throw new TypeError(
        `tied-session: ${where} must be a writable, enumerable, configurable data property; assign it instead of defining it`,
      )
    }
    if (!('value' in desc)) return true
    return this.write(target, key, desc.value, top, path, via)
  }

  describe(target: Data, key: string | symbol, via: Nested | undefined): PropertyDescriptor | undefined {
    const desc = Reflect.getOwnPropertyDescriptor(target, key)
    // a descriptor's value is the same view a read gives: a change through it is tracked
    if (desc !== undefined && typeof desc.value === 'object' && desc.value !== null) desc.value = this.read(target, key, via)
    return desc
  }
}

/** Fills `target` with null from its length up to `length` (JSON has no holes). */
function fill(target: unknown[], length: number, path?: string): void {
  if (length - target.length > MAX_FILL) {
    throw new TypeError(`tied-session: ${path ?? 'this write'} would add ${length - target.length} nulls to an array (at most ${MAX_FILL})`)
  }
  for (let i = target.length; i < length; i++) target[i] = null
}

/** The proxy tying `data` to `hooks`; `data[ID_FIELD]` must already hold the id. Returns the proxy and its tracker. */
export function track<T extends object>(data: Data, hooks: TrackerHooks): { proxy: T; detach: (value: unknown) => void } {
  const tracker = new Tracker(hooks)
  return { proxy: new Proxy(data, tracker) as T, detach: (value) => tracker.detach(value) }
}
