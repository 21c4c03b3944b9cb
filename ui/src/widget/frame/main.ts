// Entry point of the widget's iframe app, served at /widget/frame.html.
import { mount } from "svelte";
import Frame from "./Frame.svelte";

mount(Frame, { target: document.getElementById("app")! });
