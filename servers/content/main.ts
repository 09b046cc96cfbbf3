/** The content server binary: hosts the agents placement assigns to "content". */
import { runServer } from "../run.ts";

await runServer("content");
