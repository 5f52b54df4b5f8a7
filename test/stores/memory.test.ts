import test from 'ava'
import { memoryStore } from '../../src/stores/memory.js'
import { storeContract } from '../helpers/store-contract.js'

storeContract({ name: 'memory store', clock: 'fake', create: async () => memoryStore() })

test('memory store: size counts live keys only', async (t) => {
  const store = memoryStore()
  await store.write('a', '1', { ttl: 60, mode: 'set' })
  await store.write('b', '2', { ttl: 60, mode: 'set' })
  await store.delete('b')
  t.is(store.size, 1)
})
