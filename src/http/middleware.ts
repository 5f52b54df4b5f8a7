/**
 * sessionMiddleware: a Connect-style `(req, res, next)` for node:http, Connect and Express. The
 * response is held at its first writeHead/write/end until the session is saved, so that the
 * request after it (a redirect after a login) sees the save, and the Set-Cookie header is decided
 * on the saved session.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Tied } from '../index.js'
import { resolveWebOptions, type WebSessionOptions } from './options.js'
import { RequestSession } from './request-session.js'

/** A request the session middleware handled: `req.session` is its tied session. */
export type WithSession<T extends object = Record<string, unknown>> = IncomingMessage & { session: Tied<T> }

/** Connect's middleware shape; `next(err)` is called with every session error. */
export type Middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void

type Held = 'writeHead' | 'write' | 'end'

/**
 * Holds `res`'s writeHead, write and end from their first call until `finish` resolves; then adds
 * the Set-Cookie header it gave and replays the calls in order. When `finish` rejects, nothing of
 * the held response is sent (its headers are removed, its status reset) and `fail` gets the error:
 * the app's error path answers instead.
 */
function holdResponse(res: ServerResponse, finish: () => Promise<string | undefined>, fail: (err: unknown) => void): void {
  const original = { writeHead: res.writeHead, write: res.write, end: res.end }
  const calls: [Held, unknown[]][] = []
  let started = false
  const restore = () => {
    res.writeHead = original.writeHead
    res.write = original.write
    res.end = original.end
  }
  const start = () => {
    if (started) return
    started = true
    finish().then(
      (cookie) => {
        restore()
        if (cookie !== undefined && !res.headersSent) {
          const had = res.getHeader('set-cookie')
          res.setHeader('set-cookie', had === undefined ? [cookie] : [...(Array.isArray(had) ? had : [String(had)]), cookie])
        }
        for (const [method, args] of calls) (original[method] as (...a: unknown[]) => unknown).apply(res, args)
      },
      (err: unknown) => {
        restore()
        // the held response is dropped whole, headers and status too: the error path starts clean
        if (!res.headersSent) {
          for (const name of res.getHeaderNames()) res.removeHeader(name)
          res.statusCode = 200
        }
        fail(err)
      },
    )
  }
  const hold = (method: Held, result: (self: ServerResponse) => unknown) =>
    function (this: ServerResponse, ...args: unknown[]) {
      calls.push([method, args])
      start()
      return result(this)
    }
  // writeHead and end return the response (chainable); write says "go on writing": the chunks wait in memory
  res.writeHead = hold('writeHead', (self) => self) as ServerResponse['writeHead']
  res.write = hold('write', () => true) as ServerResponse['write']
  res.end = hold('end', (self) => self) as ServerResponse['end']
  // a request the client gave up on before any response: its session is still saved and released
  res.once('close', () => {
    if (!started) start()
  })
}

/**
 * A Connect-style middleware that ties `req.session` for each request: the session the request's
 * cookie names, or a new one that is stored (and given a cookie) only if the handler writes to
 * it. The handler's changes are saved once, before the first byte of the response leaves; a store
 * failure is passed to `next(err)` before anything was sent (the app decides the status).
 * With node:http, call it with a `next` callback; `next` is called again, with the error, when the
 * save fails as the response ends.
 *
 * @example
 * app.use(sessionMiddleware({ servers: ['10.0.0.15:11211'], cookie: { secret: process.env.SECRET } }))
 * app.post('/login', async (req, res) => { req.session.uid = 'dwho'; await regenerate(req.session); res.redirect('/') })
 */
export function sessionMiddleware(options: WebSessionOptions = {}): Middleware {
  const config = resolveWebOptions(options)
  return (req, res, next) => {
    const rs = new RequestSession(config, req)
    rs.load().then(
      (session) => {
        Object.defineProperty(req, 'session', { value: session, configurable: true, enumerable: true, writable: false })
        holdResponse(res, () => rs.finish(), next)
        next()
      },
      (err: unknown) => next(err),
    )
  }
}
