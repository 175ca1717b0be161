/// Stops the process with a diagnostic that names the mistake.
///
/// Every misuse swift-urcu detects ends here, so the text is uniform:
/// `swift-urcu misuse: <what was done wrong>`. Continuing would mean silent
/// corruption (a reader left unprotected, a grace period that waits for
/// itself), which is never an acceptable outcome for a synchronisation
/// library.
@usableFromInline
package func rcuMisuse(_ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError("swift-urcu misuse: \(message())", file: file, line: line)
}
