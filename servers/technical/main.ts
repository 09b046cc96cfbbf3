/** The technical server binary: hosts the agents placement assigns to "technical". */
import { runServer } from "../run.ts";

await runServer("technical");
