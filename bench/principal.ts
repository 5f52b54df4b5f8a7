/**
 * 8 principal: findSessions for a user with 1, 10 and 100 sessions: ms per call, and the
 * commands and round trips it sends (counted by a relay in front of the server); and what a
 * request on a logged-in user's session sends.
 *
 * findSessions is looked up at run time: a build without it prints one row saying so.
 */
import { countProxy } from './lib/count-proxy.js'
import { startMemcached } from './lib/memcached.js'
import { emit, verdict, fmt, runFor, summarize } from './lib/measure.js'
import { lib as typed } from './lib/tied.js'

const QUICK = process.env.BENCH_QUICK === '1'
const BENCH = 'principal: findSessions'
const lib = typed as unknown as Record<string, unknown>

type Find = (uid: string, opts: object) => Promise<unknown>
type Tie = (id: string | undefined, opts: object) => Promise<Record<string, unknown>>
const findSessions = lib.findSessions as Find | undefined
if (typeof findSessions !== 'function') {
  emit({ bench: BENCH, name: '1 / 10 / 100 sessions', figure: 'n/a: findSessions not implemented yet' })
  process.exit(0)
}
const tieSession = lib.tieSession as Tie
const untie = lib.untie as (s: object) => Promise<void>
const closeStores = lib.closeStores as () => Promise<void>

const server = await startMemcached()
const relay = await countProxy(server.port)
const direct = { servers: [server.address], principal: 'uid' }
const counted = { servers: [relay.address], principal: 'uid' }
// the first call through the relay opens its connection, whose `mn` probe (does the server speak
// meta commands?) would be counted with the first row: open it first
await findSessions('nobody', counted)

for (const n of [1, 10, 100]) {
  const uid = `user-with-${n}`
  for (let i = 0; i < n; i++) {
    const s = await tieSession(undefined, direct)
    s.uid = uid
    s.cart = { items: [i] }
    await untie(s)
  }
  const found = await findSessions(uid, direct)
  const size = Array.isArray(found) ? found.length : found instanceof Set || found instanceof Map ? found.size : NaN
  relay.take()
  await findSessions(uid, counted)
  const c = relay.take()
  const t = summarize(await runFor(QUICK ? 300 : 1000, 1, () => findSessions(uid, direct).then(() => undefined)))
  emit({
    bench: BENCH,
    name: `${n} session${n > 1 ? 's' : ''}`,
    figure: `p50 ${fmt.ms(t.p50 / 1000)}, p99 ${fmt.ms(t.p99 / 1000)}; ${c.roundTrips} round trips, ${c.commands} commands, ${c.keys} keys read${size === n ? '' : `; found ${size}, expected ${n}`}`,
  })
}
// A request on a logged-in user's session: the first save of each tie also refreshes the
// user's index (its expiry follows the session's).
const login = await tieSession(undefined, direct)
login.uid = 'returning-user'
await untie(login)
relay.take()
const again = await tieSession(login._session_id as string, counted)
again.visits = 1
await untie(again)
const request = relay.take()
emit({
  bench: 'principal: a request',
  name: 'tie + write + untie, uid set',
  figure: `${request.roundTrips} round trips, ${request.commands} commands: ${Object.entries(request.verbs)
    .map(([verb, n]) => `${n} ${verb}`)
    .join(', ')} (steady state: the user's index is written again only when the uid changes or half its TTL passed)`,
  target: '<= 2 commands',
  result: verdict(request.commands <= 2),
})
await closeStores()
await relay.close()
await server.stop()
