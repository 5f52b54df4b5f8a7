/**
 * The session id on the wire: read from a request (cookie, query parameter or header), signed
 * and checked with HMAC-SHA256, and written as a Set-Cookie header.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { parse, serialize } from 'cookie'
import type { WebConfig } from './options.js'

/** The header `idFrom: 'header'` reads. */
export const ID_HEADER = 'x-session-id'

/** What a session id may look like (as tieSession checks it): anything else never reaches the store. */
const ID_SHAPE = /^[A-Za-z0-9_-]{1,128}$/

function mac(id: string, secret: string): string {
  return createHmac('sha256', secret).update(id).digest('base64').replace(/=+$/, '')
}

/**
 * The value a cookie (or URL) carries for `id`: `s:<id>.<signature>` when signed, the form
 * express-session and cookie-signature write, so that their signed cookies stay valid; else `id`.
 */
export function wireValue(config: WebConfig, id: string): string {
  return config.signed ? `s:${id}.${mac(id, config.secrets[0]!)}` : id
}

/** The id in a wire value, or undefined when the value is malformed or its signature matches no secret. */
export function idOf(config: WebConfig, value: string): string | undefined {
  let id = value
  if (config.signed) {
    if (!value.startsWith('s:')) return undefined
    const dot = value.lastIndexOf('.')
    if (dot < 2) return undefined
    id = value.slice(2, dot)
    const given = Buffer.from(value.slice(dot + 1))
    // compared in constant time, against every secret (rotation): no early exit on the first match
    let good = false
    for (const secret of config.secrets) {
      const expected = Buffer.from(mac(id, secret))
      if (expected.length === given.length && timingSafeEqual(expected, given)) good = true
    }
    if (!good) return undefined
  }
  return ID_SHAPE.test(id) ? id : undefined
}

/** The wire value the request carries from `source`, if any. */
function carried(config: WebConfig, req: IncomingMessage, source: WebConfig['idFrom'][number]): string | undefined {
  if (source === 'cookie') {
    const header = req.headers.cookie
    return header === undefined ? undefined : parse(header)[config.name]
  }
  if (source === 'header') {
    const value = req.headers[ID_HEADER]
    return typeof value === 'string' ? value : undefined
  }
  const url = req.url ?? ''
  const q = url.indexOf('?')
  return q < 0 ? undefined : (new URLSearchParams(url.slice(q + 1)).get(config.name) ?? undefined)
}

/** The first valid id the request carries, in `idFrom` order, and where it came from. */
export function requestId(config: WebConfig, req: IncomingMessage): { id: string; source: WebConfig['idFrom'][number] } | undefined {
  for (const source of config.idFrom) {
    const value = carried(config, req, source)
    const id = value === undefined || value === '' ? undefined : idOf(config, value)
    if (id !== undefined) return { id, source }
  }
  return undefined
}

/** True for https, or with `trustProxy` an `X-Forwarded-Proto` whose first hop is https. */
function isHttps(config: WebConfig, req: IncomingMessage): boolean {
  if ((req.socket as TLSSocket | undefined)?.encrypted === true) return true
  if (!config.trustProxy) return false
  const proto = req.headers['x-forwarded-proto']
  const first = (Array.isArray(proto) ? proto[0] : proto)?.split(',')[0]?.trim().toLowerCase()
  return first === 'https'
}

/** The Set-Cookie header that gives the browser `id`, or (id undefined) that clears the cookie. */
export function setCookieHeader(config: WebConfig, req: IncomingMessage, id: string | undefined): string {
  const { domain, path, httpOnly, secure, sameSite } = config.cookie
  return serialize(config.name, id === undefined ? '' : wireValue(config, id), {
    path,
    httpOnly,
    secure: secure === 'auto' ? isHttps(config, req) : secure,
    ...(sameSite === false ? {} : { sameSite }),
    ...(domain === undefined ? {} : { domain }),
    // a cleared cookie expires at once; otherwise maxAge, or none: a browser-session cookie
    ...(id === undefined ? { expires: new Date(0), maxAge: 0 } : config.maxAge === undefined ? {} : { maxAge: config.maxAge }),
  })
}
