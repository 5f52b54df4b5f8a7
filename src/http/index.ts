/** `tied-session/http`: the session middleware for node:http, Connect and Express. Re-exports only. */
export { sessionMiddleware } from './middleware.js'
export type { Middleware, WithSession } from './middleware.js'
export { sessionUrl } from './request-session.js'
export type { WebSessionOptions, CookieOptions, IdSource } from './options.js'
