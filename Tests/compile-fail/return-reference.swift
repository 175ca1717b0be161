// Nor can the section's closure return it: read's result must be escapable.
// expect-error: requires that 'RCUReference<Node>' conform to 'Escapable'
import URCU

final class Node: Sendable {}

func escape(_ pointer: borrowing RCUPointer<Node, MembarrierRCU>) {
    let kept: RCUReference<Node>? = MembarrierRCU.read { section in pointer.dereference(in: section) }
    _ = kept
}
