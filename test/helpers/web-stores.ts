/**
 * The real stores the web tests run against: a file store in a fresh directory, and a memcached
 * store over a memcached server started for the test; with spies on get and write.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ExecutionContext } from 'ava'
import sinon from 'sinon'
import { fileStore, memcachedStore, type Store } from '../../src/index.js'
import { useMemcached, type MemcachedServer } from './memcached.js'

export const STORE_KINDS = ['file', 'memcached'] as const
export type StoreKind = (typeof STORE_KINDS)[number]

export interface SpiedStore {
  store: Store
  gets: sinon.SinonSpy
  writes: sinon.SinonSpy
  /** The memcached server, for the memcached store. */
  server: MemcachedServer | undefined
}

/** A store of `kind` for one test, closed (and its directory or server removed) at teardown. */
export async function useStore<C>(t: ExecutionContext<C>, kind: StoreKind, opts: { requestTimeout?: number } = {}): Promise<SpiedStore> {
  let store: Store
  let server: MemcachedServer | undefined
  if (kind === 'file') {
    const directory = mkdtempSync(join(tmpdir(), 'tied-web-'))
    store = fileStore({ directory })
    t.teardown(async () => {
      await store.close()
      rmSync(directory, { recursive: true, force: true })
    })
  } else {
    server = await useMemcached(t)
    store = memcachedStore({ servers: [server.address], requestTimeout: opts.requestTimeout ?? 1000 })
    t.teardown(() => store.close())
  }
  return { store, gets: sinon.spy(store, 'get'), writes: sinon.spy(store, 'write'), server }
}

/** A session as stored, parsed (JSON), or undefined when the key is absent. */
export async function storedData(store: Store, id: string): Promise<any> {
  const entry = await store.get(id)
  return entry === undefined ? undefined : JSON.parse(String(entry.value))
}
