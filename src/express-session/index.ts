/** `tied-session/express-session`: TiedStore, an express-session Store. Re-exports only. */
export { TiedStore } from './tied-store.js'
export type { TiedStoreOptions } from './tied-store.js'
