/**
 * One request's tied session, whatever the framework: tied from the id the request carries (or
 * new, stored only if written), and finished once, before the response leaves: one save, the lock
 * released, and the Set-Cookie header decided.
 */
import type { IncomingMessage } from 'node:http'
import { isSessionError } from '../index.js'
import { sessionStatus, tieSession, untie, type Tied } from '../tie.js'
import { requestId, setCookieHeader, wireValue } from './cookies.js'
import type { WebConfig } from './options.js'

/** The request sessions of requests in flight, for {@link sessionUrl}. */
const byRequest = new WeakMap<IncomingMessage, RequestSession>()

export class RequestSession<T extends object = Record<string, unknown>> {
  /** The tied session, once {@link load} resolved. */
  session!: Tied<T>
  /** The valid id the request carried, and where from. */
  private incoming: ReturnType<typeof requestId>
  private finishing: Promise<string | undefined> | undefined

  constructor(
    readonly config: WebConfig,
    readonly req: IncomingMessage,
  ) {
    byRequest.set(req, this as RequestSession<object>)
  }

  /**
   * Ties the session: the id the request carries when the store has it; otherwise (no id, a bad
   * or tampered one, unknown, expired) a new session that is stored only if written. A malformed
   * or badly signed id never reaches the store. Store failures reject (ERR_STORE_UNAVAILABLE...).
   */
  async load(): Promise<Tied<T>> {
    this.incoming = requestId(this.config, this.req)
    if (this.incoming !== undefined) {
      try {
        this.session = await tieSession<T>(this.incoming.id, this.config.tie as never)
        return this.session
      } catch (err) {
        if (!isSessionError(err, 'ERR_SESSION_NOT_FOUND') && !isSessionError(err, 'ERR_INVALID_ID')) throw err
        // unknown or expired (or an index key): a fresh session, as for no id at all
      }
    }
    this.session = await tieSession<T>(undefined, this.config.freshTie as never)
    return this.session
  }

  /**
   * Saves the handler's changes (one write), releases the session, and resolves to the Set-Cookie
   * header the response must carry (undefined: none). Runs once; a second call (a framework that
   * retries after an error) resolves to undefined and writes nothing.
   */
  finish(): Promise<string | undefined> {
    if (this.finishing !== undefined)
      return this.finishing.then(
        () => undefined,
        () => undefined,
      )
    this.finishing = this.run()
    return this.finishing
  }

  /** True once {@link finish} was called. */
  get finished(): boolean {
    return this.finishing !== undefined
  }

  private async run(): Promise<string | undefined> {
    const s = this.session as Tied<T> | undefined
    // load failed or never ran: nothing to save; readOnly never writes (an unsaved change is dropped with the request)
    if (s === undefined || this.config.readOnly) return undefined
    if (sessionStatus(s).state === 'open') await untie(s)
    return this.cookie()
  }

  /** The Set-Cookie header for the session as it ended, or undefined when the browser's cookie is right. */
  private cookie(): string | undefined {
    const s = this.session
    if (!this.config.idFrom.includes('cookie')) return undefined
    const { state, stored } = sessionStatus(s)
    const fromCookie = this.incoming?.source === 'cookie' ? this.incoming.id : undefined
    if (state === 'destroyed') return fromCookie === undefined ? undefined : setCookieHeader(this.config, this.req, undefined)
    // a new or regenerated id that the store holds; the same id: nothing to say, unless rolling
    // extends a cookie that has an expiry (its Max-Age counts again from this response)
    if (stored && s._session_id !== fromCookie) return setCookieHeader(this.config, this.req, s._session_id)
    if (stored && this.config.tie.rolling === true && this.config.maxAge !== undefined)
      return setCookieHeader(this.config, this.req, s._session_id)
    return undefined
  }
}

/**
 * `url` with the request's session id added as a query parameter named like the cookie (signed
 * when cookies are), for clients without cookies (`idFrom: ['query']`), as Catalyst's `uri()`
 * with `rewrite` does. The id then shows in logs and leaks through the Referer header to any
 * site the page links to: use it only where cookies are impossible, and never on pages with
 * outside links. Throws when the session middleware did not run for `req`.
 *
 * @example
 * res.end(`<a href="${sessionUrl(req, '/cart')}">cart</a>`)
 */
export function sessionUrl(req: IncomingMessage | { raw: IncomingMessage }, url: string): string {
  const raw = 'raw' in req ? req.raw : req
  const rs = byRequest.get(raw)
  if (rs?.session === undefined) throw new TypeError('tied-session: sessionUrl(req, url) needs a request the session middleware handled')
  const hash = url.indexOf('#')
  const [base, fragment] = hash < 0 ? [url, ''] : [url.slice(0, hash), url.slice(hash)]
  const param = `${encodeURIComponent(rs.config.name)}=${encodeURIComponent(wireValue(rs.config, rs.session._session_id))}`
  return `${base}${base.includes('?') ? '&' : '?'}${param}${fragment}`
}
