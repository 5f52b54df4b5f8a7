import test from 'ava'
import { atCheckPhase } from '../src/check-phase.js'

const checkPhase = () => new Promise((resolve) => setImmediate(resolve))

test('runs each function at the next check phase, in order, once per call; what a run schedules waits for the next one', async (t) => {
  const ran: string[] = []
  const later = () => ran.push('later')
  const a = () => {
    ran.push('a')
    atCheckPhase(later)
  }
  const b = () => ran.push('b')
  atCheckPhase(a)
  atCheckPhase(b)
  atCheckPhase(b)
  await Promise.resolve()
  t.deepEqual(ran, [], 'not in the microtasks of this tick')
  await checkPhase()
  t.deepEqual(ran, ['a', 'b', 'b'])
  await checkPhase()
  t.deepEqual(ran, ['a', 'b', 'b', 'later'])
})
