/** The operations server binary: hosts the agents placement assigns to "operations". */
import { runServer } from "../run.ts";

await runServer("operations");
