// Loaded before every test file (package.json ava.require): every save text that json-layout.ts
// makes member by member is compared with the whole object written out (a difference throws).
import { selfCheck } from '../../src/json-layout.js'

selfCheck.on = true
