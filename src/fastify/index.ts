/** `tied-session/fastify`: the Fastify plugin (default export, as Fastify plugins are). Re-exports only. */
export { default, tiedSession } from './plugin.js'
export type { FastifySessionData } from './plugin.js'
export { sessionUrl } from '../http/request-session.js'
export type { WebSessionOptions, CookieOptions, IdSource } from '../http/options.js'
