// Riders streaming GPS: each VU is one rider (registered and logged in once, in setup()),
// connected to /ws/rider, available, sending a `location` frame about once a second with
// small realistic moves. Any `error` frame from the server counts in ws_error_frames.
//
//   k6 run --no-usage-report -e VUS=20 -e DURATION=30s simulations/k6/rider_fleet.js
// (no admin account needed; README.md lists every variable)

import { DURATION, RIDER_VUS, THRESHOLDS, riderSession, setupFor, teardownFor } from './lib/medify.js';

export const options = {
  scenarios: {
    riders: {
      executor: 'constant-vus',
      vus: RIDER_VUS,
      duration: DURATION,
      exec: 'riders',
      gracefulStop: '10s',
    },
  },
  thresholds: THRESHOLDS,
  setupTimeout: '300s',
};

export function setup() {
  return setupFor({ riders: true, customers: false });
}

export function teardown(data) {
  teardownFor(data);
}

export function riders(data) {
  riderSession(data);
}

export default riders;
