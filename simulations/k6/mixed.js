// Both at once: RIDER_VUS riders streaming GPS around the pharmacy while CUSTOMER_VUS
// customers order from it and watch their orders. The riders are in the matcher's range,
// so they are offered the orders; they never answer, so offers expire (counted in
// rider_offers_received) until the customer cancels.
//
//   k6 run --no-usage-report -e MEDIFY_ADMIN_EMAIL=... -e MEDIFY_ADMIN_PASSWORD=... \
//          -e RIDER_VUS=50 -e CUSTOMER_VUS=10 -e DURATION=60s simulations/k6/mixed.js

import {
  CUSTOMER_VUS,
  DURATION,
  RIDER_VUS,
  THRESHOLDS,
  customerJourney,
  riderSession,
  setupFor,
  teardownFor,
} from './lib/medify.js';

export const options = {
  scenarios: {
    riders: {
      executor: 'constant-vus',
      vus: RIDER_VUS,
      duration: DURATION,
      exec: 'riders',
      gracefulStop: '10s',
    },
    customers: {
      executor: 'constant-vus',
      vus: CUSTOMER_VUS,
      duration: DURATION,
      exec: 'customers',
      gracefulStop: '10s',
    },
  },
  thresholds: THRESHOLDS,
  setupTimeout: '300s',
};

export function setup() {
  return setupFor({ riders: true, customers: true });
}

export function teardown(data) {
  teardownFor(data);
}

export function riders(data) {
  riderSession(data);
}

export function customers(data) {
  customerJourney(data);
}
