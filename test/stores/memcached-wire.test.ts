import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import net from 'node:net'
import Memcached from 'memcached'
import { SessionError } from '../../src/errors.js'
import { injectedPool } from '../../src/stores/memcached-injected.js'
import { WireClient } from '../../src/stores/memcached-wire.js'
import { freePort, useMemcached, type MemcachedServer } from '../helpers/memcached.js'

const test = anyTest as TestFn<unknown>
type T = ExecutionContext<unknown>

/** A deadline for tests that do not measure deadlines. */
const PATIENT = 5000

function client(t: T, servers: string[], timeout = PATIENT): WireClient {
  const made = new WireClient(servers, timeout)
  t.teardown(() => made.close(new SessionError('ERR_STORE_UNAVAILABLE', 'test over')))
  return made
}

async function unavailable(t: T, promise: Promise<unknown>): Promise<SessionError | undefined> {
  const err = await t.throwsAsync(promise, { instanceOf: SessionError })
  t.is(err?.code, 'ERR_STORE_UNAVAILABLE')
  return err
}

/** A loopback proxy in front of `target`: `onData` gets each chunk from the client; everything is closed at the test's end. */
async function proxy(
  t: T,
  target: MemcachedServer,
  onData: (socket: net.Socket, chunk: Buffer, upstream: net.Socket) => void,
): Promise<{ address: string; connections: () => number }> {
  const sockets = new Set<net.Socket>()
  let connections = 0
  const server = net.createServer((socket) => {
    connections++
    const upstream = net.connect(target.port, target.host)
    sockets.add(socket).add(upstream)
    socket.on('data', (chunk: Buffer) => onData(socket, chunk, upstream))
    upstream.pipe(socket)
    for (const s of [socket, upstream]) s.on('error', () => undefined).on('close', () => (socket.destroy(), upstream.destroy()))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, connections: () => connections }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Values that must come back byte for byte: CR/LF, what looks like replies, multibyte UTF-8. */
const ODD = ['line\r\nbreak\n\r\0', 'é € 𝄞 ключ', 'HD c1\r\nVA 2\r\nEN\r\n', 'END\r\nVALUE x 0 1\r\n', '', 'x'.repeat(100_000)]

test('meta: metaSet returns the new cas; metaGet returns what was asked for; values byte for byte', async (t) => {
  const p = await useMemcached(t)
  const wire = client(t, [p.address])
  t.true(await wire.supportsMeta('k'))
  for (const [i, value] of ODD.entries()) {
    const set = await wire.metaSet(`odd${i}`, value, { mode: 'set', ttl: 60 })
    t.is(set.result, 'stored')
    t.regex(set.cas ?? '', /^\d+$/)
    const got = await wire.metaGet(`odd${i}`, { value: true, cas: true, ttl: true, size: true, flags: true })
    t.deepEqual(got, { value, cas: set.cas, ttl: 60, size: Buffer.byteLength(value), flags: 0 }, JSON.stringify(value.slice(0, 20)))
    t.is((await wire.get(`odd${i}`))?.value, value, 'the text protocol reads the same bytes')
  }
  const raw = await p.raw('get odd0\r\n')
  t.is(raw, `VALUE odd0 0 ${Buffer.byteLength(ODD[0]!)}\r\n${ODD[0]}\r\nEND\r\n`)
  t.is(await wire.metaGet('missing', { value: true }), undefined)
  t.deepEqual(await wire.metaGet('odd1'), {}, 'a hit with nothing asked for')
  t.deepEqual(await wire.metaGet('odd1', { ttl: true, touch: 0 }), { ttl: 60 }, 'the ttl before the touch')
  t.deepEqual(await wire.metaGet('odd1', { ttl: true }), { ttl: -1 }, 'touched to never expire')
  const flagged = await wire.metaSet('flagged', 'v', { mode: 'set', ttl: 0, flags: 7 })
  t.deepEqual(await wire.metaGet('flagged', { flags: true }), { flags: 7 })
  t.is((await wire.get('flagged'))?.flags, 7)
  t.is(flagged.result, 'stored')
})

test('meta: modes and cas give stored, not_stored, exists and not_found as memcached answers them', async (t) => {
  const p = await useMemcached(t)
  const wire = client(t, [p.address])
  t.deepEqual(await wire.metaSet('r', 'v', { mode: 'replace', ttl: 60 }), { result: 'not_stored' })
  const added = await wire.metaSet('a', 'v1', { mode: 'add', ttl: 60 })
  t.is(added.result, 'stored')
  t.deepEqual(await wire.metaSet('a', 'v2', { mode: 'add', ttl: 60 }), { result: 'not_stored' })
  const replaced = await wire.metaSet('a', 'v2', { mode: 'replace', ttl: 60, cas: added.cas! })
  t.is(replaced.result, 'stored')
  t.not(replaced.cas, added.cas, 'a new cas')
  t.deepEqual(await wire.metaSet('a', 'v3', { mode: 'set', ttl: 60, cas: added.cas! }), { result: 'exists' }, 'the old cas')
  t.deepEqual(await wire.metaSet('gone', 'v', { mode: 'set', ttl: 60, cas: '12345' }), { result: 'not_found' })
  t.deepEqual(await wire.metaSet('a', 'v3', { mode: 'set', ttl: 60, cas: 'not a cas' }), { result: 'exists' }, 'never sent')
  t.deepEqual(await wire.metaGet('a', { value: true, cas: true }), { value: 'v2', cas: replaced.cas! })
  t.is(await wire.metaDelete('a', { cas: added.cas! }), 'exists')
  t.is(await wire.metaDelete('a', { cas: replaced.cas! }), 'deleted')
  t.is(await wire.metaDelete('a'), 'not_found')
  await wire.metaSet('b', 'v', { mode: 'set', ttl: 60 })
  t.is(await wire.metaDelete('b'), 'deleted')
  t.is(await p.raw('get b\r\n'), 'END\r\n')
  // an exptime of -1 stores the item already expired (the store's conditional unlock relies on it)
  t.is((await wire.metaSet('c', 'v', { mode: 'set', ttl: -1 })).result, 'stored')
  t.is(await wire.metaGet('c', { value: true }), undefined)
})

test('meta: a server that answers mn with ERROR (memcached < 1.6) is text only: meta calls reject unsent, text calls work', async (t) => {
  const p = await useMemcached(t)
  // a proxy in front of memcached that answers "mn" as memcached 1.5 does and passes the rest on
  const { address } = await proxy(t, p, (socket, chunk, upstream) => {
    const text = chunk.toString('latin1')
    if (text.startsWith('mn\r\n')) socket.write('ERROR\r\n')
    const rest = text.startsWith('mn\r\n') ? chunk.subarray(4) : chunk
    if (rest.length > 0) upstream.write(rest)
  })
  const wire = client(t, [address])
  const before = await p.stats()
  // calls made before the probe's answer wait for it: the meta one is never sent
  const [meta, text] = await Promise.allSettled([wire.metaSet('k', 'v', { mode: 'set', ttl: 60 }), wire.store('set', 'k', 'text', 60)])
  t.is(meta.status === 'rejected' && (meta.reason as SessionError).code, 'ERR_STORE_UNAVAILABLE')
  t.regex(meta.status === 'rejected' ? (meta.reason as Error).message : '', /does not speak the meta protocol/)
  t.false(meta.status === 'rejected' && (meta.reason as SessionError).outcomeUnknown, 'never sent')
  t.is(text.status === 'fulfilled' && text.value, 'STORED')
  t.false(await wire.supportsMeta('k'))
  await unavailable(t, wire.metaGet('k', { value: true }))
  t.is((await wire.get('k'))?.value, 'text')
  t.is(Number((await p.stats()).cmd_set) - Number(before.cmd_set), 1, 'only the text set reached memcached')

  // the injected npm client has no meta either
  const npm = new Memcached(p.address, { retries: 0 })
  t.teardown(() => npm.end())
  const pool = injectedPool(npm, PATIENT)
  t.false(await pool.supportsMeta('k'))
  await unavailable(t, pool.metaSet('k', 'v', { mode: 'set', ttl: 60 }))
})

test('a write sent to a stalled server and timed out is outcomeUnknown; a read, or a write refused unsent, is not', async (t) => {
  const p = await useMemcached(t)
  const wire = client(t, [p.address], 300)
  t.true(await wire.supportsMeta('k')) // connected
  t.teardown(() => p.resume())
  await p.pause()
  const calls: [string, Promise<unknown>][] = [
    ['get', wire.get('k')],
    ['set', wire.store('set', 'k', 'v', 60)],
    ['add', wire.store('add', 'k2', 'v', 60)],
    ['cas', wire.cas('k', 'v', '1', 60)],
    ['delete', wire.delete('k')],
    ['touch', wire.touch('k', 60)],
    ['ms', wire.metaSet('k', 'v', { mode: 'set', ttl: 60 })],
    ['md', wire.metaDelete('k')],
    ['mg', wire.metaGet('k', { value: true })],
  ]
  const reads = new Set(['get', 'mg'])
  for (const [name, call] of calls) {
    const err = await unavailable(t, call)
    t.regex(err?.message ?? '', /no answer from memcached .* in 300 ms/)
    t.is(err?.outcomeUnknown, !reads.has(name), name)
  }
  // refused now (the stall is a failure): a write is not sent, so its outcome is known
  const refused = await unavailable(t, wire.store('set', 'k', 'v', 60))
  t.false(refused?.outcomeUnknown)
  // a server that is not there: nothing was ever sent
  const down = client(t, [`127.0.0.1:${await freePort()}`])
  t.false((await unavailable(t, down.store('set', 'k', 'v', 60)))?.outcomeUnknown)
})

test('a write in flight when the server dies is outcomeUnknown', async (t) => {
  const p = await useMemcached(t)
  const wire = client(t, [p.address])
  t.true(await wire.supportsMeta('k'))
  t.teardown(() => p.resume())
  await p.pause()
  const write = wire.store('set', 'k', 'v', 60)
  const metaWrite = wire.metaSet('k', 'v', { mode: 'set', ttl: 60 })
  const read = wire.get('k')
  await sleep(50)
  await p.kill()
  for (const [promise, unknown] of [
    [write, true],
    [metaWrite, true],
    [read, false],
  ] as const) {
    const err = await unavailable(t, promise)
    t.regex(err?.message ?? '', /failed: .*(closed the connection|ECONNRESET)/)
    t.is(err?.outcomeUnknown, unknown)
  }
})

test('close fails the calls in flight with its error: a write already sent is outcomeUnknown, later calls are not', async (t) => {
  const p = await useMemcached(t)
  const wire = new WireClient([p.address], PATIENT)
  t.true(await wire.supportsMeta('k'))
  t.teardown(() => p.resume())
  await p.pause()
  const write = wire.store('set', 'k', 'v', 60)
  await sleep(20)
  wire.close(new SessionError('ERR_STORE_UNAVAILABLE', 'the memcached store is closed; create a new one'))
  const err = await unavailable(t, write)
  t.is(err?.message, 'tied-session: the memcached store is closed; create a new one')
  t.true(err?.outcomeUnknown)
  t.false((await unavailable(t, wire.store('set', 'k', 'v', 60)))?.outcomeUnknown)
})

test('meta: a proxy that closes the connection on mn is text only from then on, and is not asked again', async (t) => {
  const p = await useMemcached(t)
  const { address, connections } = await proxy(t, p, (socket, chunk, upstream) => {
    if (chunk.toString('latin1').startsWith('mn\r\n')) socket.destroy()
    else upstream.write(chunk)
  })
  const wire = client(t, [address])
  t.false(await wire.supportsMeta('k'))
  await unavailable(t, wire.metaGet('k'))
  t.is(await wire.store('set', 'k', 'v', 60), 'STORED')
  t.is((await wire.get('k'))?.value, 'v')
  t.is(connections(), 2, 'one connection closed on mn, one that serves')
})

test('meta: a proxy that closes the connection on mn costs the first calls nothing: they wait for the probe, then go out on a new connection', async (t) => {
  const p = await useMemcached(t)
  const { address, connections } = await proxy(t, p, (socket, chunk, upstream) => {
    // as twemproxy: a connection that sends mn is closed, and what came with it is never answered
    if (chunk.toString('latin1').includes('mn\r\n')) socket.destroy()
    else upstream.write(chunk)
  })
  const wire = client(t, [address])
  const [stored, read, meta] = await Promise.allSettled([wire.store('set', 'k', 'v', 60), wire.get('k'), wire.metaGet('k')])
  t.deepEqual(stored, { status: 'fulfilled', value: 'STORED' })
  t.is(read.status === 'fulfilled' && read.value?.value, 'v')
  t.regex(meta.status === 'rejected' ? (meta.reason as Error).message : '', /does not speak the meta protocol/)
  t.false(await wire.supportsMeta('k'))
  t.is(connections(), 2)
})

test("protocol: 'text' never sends mn; 'meta' sends no probe and speaks meta at once", async (t) => {
  const p = await useMemcached(t)
  const seen: string[] = []
  const { address } = await proxy(t, p, (_socket, chunk, upstream) => {
    seen.push(chunk.toString('latin1'))
    upstream.write(chunk)
  })
  const text = new WireClient([address], PATIENT, undefined, 'text')
  t.teardown(() => text.close(new SessionError('ERR_STORE_UNAVAILABLE', 'test over')))
  t.false(await text.supportsMeta('k'))
  t.is(await text.store('set', 'k', 'v', 60), 'STORED')
  await unavailable(t, text.metaGet('k'))
  const meta = new WireClient([address], PATIENT, undefined, 'meta')
  t.teardown(() => meta.close(new SessionError('ERR_STORE_UNAVAILABLE', 'test over')))
  t.true(await meta.supportsMeta('k'))
  t.deepEqual(await meta.metaGet('k', { value: true }), { value: 'v' })
  t.false(seen.join('').includes('mn\r\n'), seen.join(''))
})
