/**
 * The options of the web adapters (sessionMiddleware, the Fastify plugin): every tie option plus
 * the cookie and the places a session id is read from; checked once, when the middleware is made.
 */
import { resolveOptions, type TieOptions } from '../options.js'

/** Where a request's session id may come from, in the order given. */
export type IdSource = 'cookie' | 'query' | 'header'

/** The session cookie. */
export interface CookieOptions {
  /** The cookie's name; `idFrom: 'query'` reads the query parameter of the same name. @default 'sid' */
  name?: string
  /**
   * The key(s) cookies are signed with (HMAC-SHA256, the `s:<id>.<signature>` form express-session
   * writes): a string, or an array for rotation (sign with the first, accept any).
   */
  secret?: string | readonly string[]
  /** Sign the cookie; `false` reads and writes a bare id, as Perl SSO portals do. @default true when a secret is given */
  signed?: boolean
  /** The cookie's Domain, to share it across apps of one domain (SSO). @default none: this host only */
  domain?: string
  /** @default '/' */
  path?: string
  /** @default true */
  httpOnly?: boolean
  /** `'auto'`: set on https requests, or a trusted `X-Forwarded-Proto: https` (see `trustProxy`). @default 'auto' */
  secure?: boolean | 'auto'
  /** @default 'lax' */
  sameSite?: 'lax' | 'strict' | 'none' | false
  /** Seconds the cookie lives in the browser; absent: a browser-session cookie. */
  maxAge?: number
}

/** Options of {@link sessionMiddleware} and the Fastify plugin: every tie option plus these. */
export interface WebSessionOptions extends Omit<TieOptions, 'create' | 'autoSave' | 'updateOnly' | 'signal'> {
  /** The session cookie. */
  cookie?: CookieOptions
  /** Believe `X-Forwarded-Proto` (for `secure: 'auto'`): only behind a proxy that sets it. @default false */
  trustProxy?: boolean
  /** Never write the store and never set a cookie: an app that only reads a portal's session. @default false */
  readOnly?: boolean
  /**
   * Where the id is read from, first match wins. `'query'` (the parameter named like the cookie) and
   * `'header'` (`X-Session-Id`) are for clients without cookies; see `sessionUrl`. @default ['cookie']
   */
  idFrom?: readonly IdSource[]
}

/** The checked options, with their defaults. */
export interface WebConfig {
  tie: TieOptions
  name: string
  secrets: readonly string[]
  signed: boolean
  cookie: {
    domain: string | undefined
    path: string
    httpOnly: boolean
    secure: boolean | 'auto'
    sameSite: 'lax' | 'strict' | 'none' | false
  }
  maxAge: number | undefined
  trustProxy: boolean
  readOnly: boolean
  idFrom: readonly IdSource[]
  /** A fresh (cookie-less) request's tie: nothing is stored until a change, no lock (nobody else knows the id). */
  freshTie: TieOptions
}

const WEB_KEYS = new Set(['cookie', 'trustProxy', 'readOnly', 'idFrom'])
const COOKIE_KEYS = new Set(['name', 'secret', 'signed', 'domain', 'path', 'httpOnly', 'secure', 'sameSite', 'maxAge'])
/** What a cookie name may be (an RFC 6265 token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

function check(name: string, ok: boolean, expected: string): void {
  if (!ok) throw new TypeError(`tied-session: option ${name} must be ${expected}`)
}

/** Checks the web options once and splits them into the tie options and the cookie's. */
export function resolveWebOptions(options: WebSessionOptions = {}): WebConfig {
  check('options', typeof options === 'object' && options !== null, 'an object')
  const tie: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(options)) if (!WEB_KEYS.has(key)) tie[key] = value
  for (const key of ['create', 'autoSave', 'updateOnly', 'signal']) {
    if (key in tie) throw new TypeError(`tied-session: option ${key} is decided per request by the web adapters; leave it out`)
  }
  const cookie = options.cookie ?? {}
  check('cookie', typeof cookie === 'object' && cookie !== null, 'an object')
  for (const key of Object.keys(cookie)) {
    if (!COOKIE_KEYS.has(key)) throw new TypeError(`tied-session: unknown option cookie.${key}; known: ${[...COOKIE_KEYS].join(', ')}`)
  }
  const name = cookie.name ?? 'sid'
  check('cookie.name', typeof name === 'string' && TOKEN.test(name), "a cookie name (letters, digits and !#$%&'*+-.^_`|~)")
  const secrets = cookie.secret === undefined ? [] : typeof cookie.secret === 'string' ? [cookie.secret] : [...cookie.secret]
  check('cookie.secret', secrets.length > 0 || cookie.secret === undefined, 'a non-empty string or array of strings')
  for (const s of secrets) check('cookie.secret', typeof s === 'string' && s.length > 0, 'a non-empty string or array of non-empty strings')
  const signed = cookie.signed ?? secrets.length > 0
  check('cookie.signed', typeof signed === 'boolean', 'a boolean')
  if (signed && secrets.length === 0) throw new TypeError('tied-session: option cookie.signed needs cookie.secret (the signing key)')
  check('cookie.domain', cookie.domain === undefined || (typeof cookie.domain === 'string' && cookie.domain !== ''), 'a domain')
  const path = cookie.path ?? '/'
  check('cookie.path', typeof path === 'string' && path.startsWith('/'), "a path starting with '/'")
  const httpOnly = cookie.httpOnly ?? true
  check('cookie.httpOnly', typeof httpOnly === 'boolean', 'a boolean')
  const secure = cookie.secure ?? 'auto'
  check('cookie.secure', typeof secure === 'boolean' || secure === 'auto', "a boolean or 'auto'")
  const sameSite = cookie.sameSite ?? 'lax'
  check('cookie.sameSite', sameSite === false || ['lax', 'strict', 'none'].includes(sameSite), "'lax', 'strict', 'none' or false")
  const maxAge = cookie.maxAge
  check('cookie.maxAge', maxAge === undefined || (Number.isInteger(maxAge) && maxAge > 0), 'a whole number of seconds > 0')
  const trustProxy = options.trustProxy ?? false
  check('trustProxy', typeof trustProxy === 'boolean', 'a boolean')
  const readOnly = options.readOnly ?? false
  check('readOnly', typeof readOnly === 'boolean', 'a boolean')
  const idFrom = options.idFrom ?? ['cookie']
  check(
    'idFrom',
    Array.isArray(idFrom) && idFrom.length > 0 && idFrom.every((s) => s === 'cookie' || s === 'query' || s === 'header'),
    "a non-empty array of 'cookie', 'query', 'header'",
  )
  if (readOnly && tie.lock === 'exclusive')
    throw new TypeError("tied-session: option readOnly cannot hold lock 'exclusive' (it never writes)")
  // every tie option checked now, once: unknown keys and bad values are TypeErrors here, not per request
  resolveOptions(tie as TieOptions)
  const perRequest = { ...tie, autoSave: false } as TieOptions
  return {
    tie: perRequest,
    freshTie: { ...perRequest, updateOnly: true, lock: 'none' },
    name,
    secrets,
    signed,
    cookie: { domain: cookie.domain, path, httpOnly, secure, sameSite },
    maxAge,
    trustProxy,
    readOnly,
    idFrom,
  }
}
