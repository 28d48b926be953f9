// htm's tagged templates over Preact: JSX-like markup without a build step.
import { h } from "preact";
import htm from "htm";

export const html = htm.bind(h);
