// Customers ordering: setup() signs in as the admin (MEDIFY_ADMIN_EMAIL /
// MEDIFY_ADMIN_PASSWORD), creates a pharmacy in central Bengaluru with a small catalog and
// plenty of stock, and registers + logs in one customer per VU. Each iteration a customer
// searches the catalog, finds the pharmacy near their door, orders from it, opens
// /ws/orders/{id}/track and checks the first frame is that order's `snapshot`, closes it,
// and cancels the order (CANCEL_ORDERS=0 keeps it open).
//
//   k6 run --no-usage-report -e MEDIFY_ADMIN_EMAIL=... -e MEDIFY_ADMIN_PASSWORD=... \
//          -e VUS=5 -e DURATION=30s simulations/k6/customer_journey.js

import { CUSTOMER_VUS, DURATION, THRESHOLDS, customerJourney, setupFor } from './lib/medify.js';

export const options = {
  scenarios: {
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
  return setupFor({ riders: false, customers: true });
}

export function customers(data) {
  customerJourney(data);
}

export default customers;
