#!/usr/bin/env node
// `mesh` on PATH (npm link / npx): same as `node bin/bootstrap.cjs`.
require("./bootstrap.cjs");
