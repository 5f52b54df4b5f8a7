/**
 * The Fastify plugin: `request.session` is the request's tied session, tied in onRequest; the
 * handler's changes are saved in onSend, before the reply's headers and payload go out, and the
 * Set-Cookie header decided there. Registered with the fastify-plugin conventions (skip-override,
 * display name, plugin-meta), so that `request.session` is seen in every context.
 */
import type { FastifyPluginAsync } from 'fastify'
import type { Tied } from '../index.js'
import { resolveWebOptions, type WebSessionOptions } from '../http/options.js'
import { RequestSession } from '../http/request-session.js'

/**
 * The data of `request.session`; name your fields by augmenting it:
 * `declare module 'tied-session/fastify' { interface FastifySessionData { uid: string } }`.
 */
export interface FastifySessionData {
  [key: string]: unknown
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's tied session (tied-session/fastify). */
    session: Tied<FastifySessionData>
  }
}

const kRequestSession = Symbol('tied-session request session')

type WithRequestSession = { [kRequestSession]?: RequestSession }

/**
 * The tied-session plugin for Fastify 5: `await app.register(tiedSession, options)`, options as
 * for `sessionMiddleware`. A store failure while tying is the request's error (the app's error
 * handler decides the status); while saving, in onSend, it replaces the reply with that error
 * before anything of it was sent.
 *
 * @example
 * await app.register(tiedSession, { servers: ['10.0.0.15:11211'], cookie: { secret } })
 * app.get('/', async (request) => ({ visits: (request.session.visits = (request.session.visits ?? 0) + 1) }))
 */
const tiedSession: FastifyPluginAsync<WebSessionOptions> = async (fastify, options) => {
  const config = resolveWebOptions(options)
  fastify.decorateRequest('session', null as unknown as Tied<FastifySessionData>)
  fastify.addHook('onRequest', async (request) => {
    const rs = new RequestSession(config, request.raw)
    ;(request as WithRequestSession)[kRequestSession] = rs
    request.session = (await rs.load()) as Tied<FastifySessionData>
  })
  fastify.addHook('onSend', async (request, reply, payload) => {
    const rs = (request as WithRequestSession)[kRequestSession]
    // onSend runs again for the error reply a failed save makes: finish() says nothing more then
    let cookie: string | undefined
    try {
      cookie = await rs?.finish()
    } catch (err) {
      // the reply is dropped whole, its headers too (a redirect's Location): the error handler starts clean
      for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name)
      throw err
    }
    if (cookie !== undefined) {
      const had = reply.getHeader('set-cookie')
      reply.header('set-cookie', had === undefined ? cookie : [...(Array.isArray(had) ? had : [String(had)]), cookie])
    }
    return payload
  })
  // a request that ended without onSend (the client went away): its session is still saved and released
  const settle = async (request: { log: { error: (o: object, m: string) => void } } & WithRequestSession) => {
    const rs = request[kRequestSession]
    if (rs === undefined || rs.finished) return
    try {
      await rs.finish()
    } catch (err) {
      // the reply is gone: the framework's log is the error path left
      request.log.error({ err }, 'tied-session: saving the session of a request that ended without a reply failed')
    }
  }
  fastify.addHook('onResponse', settle)
  fastify.addHook('onRequestAbort', settle)
}

// the fastify-plugin conventions, written out (what fastify-plugin sets): no encapsulation, a name, the fastify versions
Object.assign(tiedSession, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'tied-session',
  [Symbol.for('plugin-meta')]: { fastify: '5.x', name: 'tied-session' },
})

export default tiedSession
export { tiedSession }
