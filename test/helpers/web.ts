/**
 * Web test helpers: a server on a free loopback port closed at the test's teardown, and a tiny
 * browser (a cookie jar over fetch, redirects not followed).
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { ExecutionContext } from 'ava'

/** Starts `listener` on 127.0.0.1, a free port; closes it (and its keep-alive connections) at teardown. */
export async function serve<C>(t: ExecutionContext<C>, listener: http.RequestListener): Promise<string> {
  const server = http.createServer(listener)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** A cookie jar over fetch: sends its cookies, keeps what Set-Cookie says (Max-Age=0 removes). */
export class Browser {
  readonly cookies = new Map<string, string>()
  readonly setCookies: string[][] = []

  constructor(readonly base: string) {}

  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers)
    if (this.cookies.size > 0) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '))
    const res = await fetch(this.base + path, { ...init, headers, redirect: 'manual', signal: AbortSignal.timeout(10_000) })
    const set = res.headers.getSetCookie()
    this.setCookies.push(set)
    for (const line of set) {
      const [pair = ''] = line.split(';')
      const eq = pair.indexOf('=')
      const name = pair.slice(0, eq).trim()
      if (/max-age=0/i.test(line) || pair.slice(eq + 1) === '') this.cookies.delete(name)
      else this.cookies.set(name, pair.slice(eq + 1))
    }
    return res
  }

  async text(path: string, init?: RequestInit): Promise<string> {
    return (await this.fetch(path, init)).text()
  }
}

/** The session id in a browser's signed `sid` cookie (`s:<id>.<signature>`, url-encoded). */
export const idOfCookie = (b: Browser): string | undefined => /^s%3A([^.]+)\./.exec(b.cookies.get('sid') ?? '')?.[1]
