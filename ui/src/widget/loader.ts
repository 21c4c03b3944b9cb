// widget.js, the embed script (placeholder: the widget issue fills it in).
// It reads data-app-key from its own <script> tag, adds a launcher button
// and opens the chat in an iframe served by the same host.
export {};
