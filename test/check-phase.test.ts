import test from 'ava'
import { CheckPhaseBatch } from '../src/check-phase.js'

const checkPhase = () => new Promise((resolve) => setImmediate(resolve))

test('a batch hands its items to its run at the next check phase, in order; what a run adds waits for the next one', async (t) => {
  const ran: string[][] = []
  const later = new CheckPhaseBatch<string>((items) => ran.push(['later', ...items]))
  const batch = new CheckPhaseBatch<string>((items) => {
    ran.push(items)
    later.add('from a run')
  })
  batch.add('a')
  batch.add('b')
  batch.add('b')
  t.deepEqual(batch.waiting, ['a', 'b', 'b'])
  await Promise.resolve()
  t.deepEqual(ran, [], 'not in the microtasks of this tick')
  await checkPhase()
  t.deepEqual(ran, [['a', 'b', 'b']])
  t.deepEqual(batch.waiting, [])
  await checkPhase()
  t.deepEqual(ran, [
    ['a', 'b', 'b'],
    ['later', 'from a run'],
  ])
})
